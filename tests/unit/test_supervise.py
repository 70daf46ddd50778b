"""The launcher's restart decisions and its readings of exit status and /proc state."""
import os
import socket

import pytest

from nodes.core.supervise import Restarts, describe_exit, is_paused
from nodes.launcher import check_ports, listener_of, port_taken, proc_state


def test_no_policy_never_restarts():
    assert Restarts("no", 1.0).after_exit(lived=100) is None


def test_always_restarts_after_the_delay_and_backs_off_in_a_crash_loop():
    r = Restarts("always", 1.0, max_delay=5, stable_after=10)
    assert [r.after_exit(lived=0.5) for _ in range(5)] == [1.0, 2.0, 4.0, 5, 5]
    assert r.after_exit(lived=60) == 1.0           # it lived: back to the base delay
    assert r.after_exit(lived=1) == 2.0


def test_a_zero_delay_still_backs_off():
    r = Restarts("always", 0)
    assert [r.after_exit(lived=0) for _ in range(3)] == [0, 0.5, 1.0]


def test_bad_policy_or_delay_is_refused():
    with pytest.raises(ValueError):
        Restarts("sometimes", 1)
    with pytest.raises(ValueError):
        Restarts("always", -1)


def test_exit_descriptions():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-19) == "killed by SIGSTOP"
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"


def test_paused_states():
    assert is_paused("T") and is_paused("t")
    assert not is_paused("S") and not is_paused("R") and not is_paused(None)


def test_proc_state_of_this_process_and_of_none():
    assert proc_state(os.getpid()) in ("R", "S")
    assert proc_state(2 ** 22 + 12345) is None


def test_a_taken_port_is_found_with_its_owner():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_taken(port)
        assert listener_of(port).startswith(f"pid {os.getpid()} (")
        [problem] = check_ports({port: "HTTP of master"})
        assert problem.startswith(f"port {port} (HTTP of master) is taken by pid {os.getpid()}")
    assert not port_taken(port)
    assert check_ports({port: "HTTP of master"}) == []


def test_fresh_refuses_to_wipe_a_folder_the_launcher_did_not_write(tmp_path):
    from nodes.launcher import Launcher, parser
    (tmp_path / "precious.txt").write_text("keep me")
    (tmp_path / "master").mkdir()
    launcher = Launcher(parser().parse_args(["--data-root", str(tmp_path), "--fresh"]))
    with pytest.raises(RuntimeError, match="precious.txt"):
        launcher.start()
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert (tmp_path / "master").is_dir()
