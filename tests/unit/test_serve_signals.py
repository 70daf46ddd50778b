"""nodes/serve.py: a SIGTERM or SIGINT before a node serves ends it with exit status 0 and
one log line, and no logging error when the signal lands while the node is inside a loguru
call."""
import signal

import pytest
from loguru import logger

from nodes import serve


def test_the_pre_serving_signal_handler_does_not_log(capsys):
    # A loguru sink runs with its handler's lock held, as a node's main thread does in the
    # middle of a log call; the signal handler runs there. Logging from it would re-enter
    # that lock, which loguru refuses ("deadlock avoided"): the line is lost and a "Logging
    # error in Loguru Handler" block with a traceback goes to stderr instead.
    raised = []

    def sink(message):
        try:
            serve._stop_before_serving(signal.SIGTERM, None)
        except BaseException as e:    # noqa: BLE001 - what the handler raises, whatever it is
            raised.append(e)

    sink_id = logger.add(sink)
    try:
        logger.info("a line the signal interrupts")
    finally:
        logger.remove(sink_id)
    assert len(raised) == 1
    assert isinstance(raised[0], SystemExit) and raised[0].code == 0, raised[0]
    assert "Logging error" not in capsys.readouterr().err


def test_run_node_logs_the_signal_and_exits_0(monkeypatch):
    lines = []
    sink_id = logger.add(lambda m: lines.append(m.record["message"]))

    def serve_until_signalled(*args):
        serve._stop_before_serving(signal.SIGINT, None)

    monkeypatch.setattr(serve, "_serve", serve_until_signalled)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(SystemExit) as stopped:
            serve.run_node(None, None, "replog.secondary.x", None)
    finally:
        logger.remove(sink_id)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert stopped.value.code == 0 and type(stopped.value) is SystemExit
    assert lines == ["stopping before serving (SIGINT)"]
