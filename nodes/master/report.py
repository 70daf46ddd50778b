"""The master's log lines and dashboard events for what its state machine reports: one
function per event kind (nodes/core/ready.py lists them), so every wording lives here."""
from __future__ import annotations

from loguru import logger

from ..core.ready import Event
from ..events import add_event


def _restart(e: Event) -> None:
    text = f"{e.name} answered as a new incarnation with ack={e.fields['acked_seq']}"
    logger.warning("{}", text)
    add_event("restart", text)


def _catchup(e: Event) -> None:
    text = (f"catching up {e.name} from seq={e.fields['from_seq']}: {e.fields['count']} "
            "messages to send")
    logger.info("{}", text)
    add_event("catchup", text)


def _caught_up(e: Event) -> None:
    f = e.fields
    text = f"{e.name} caught up at seq={f['acked_seq']}: sent {f['sent']} messages"
    if f["seconds"] is None:
        logger.info("{}", text)
        return
    lacked = "" if f["lacked"] is None else f" (it lacked {f['lacked']})"
    logger.info("{}{} in {:.2f} s", text, lacked, f["seconds"])
    add_event("catchup", f"{e.name} caught up at seq={f['acked_seq']} in {f['seconds']:.2f} s")


def _health(e: Event) -> None:
    f = e.fields
    text = f"{e.name} is {f['new']} (was {f['old'] or 'unknown'}), lag={f['lag']}"
    logger.info("{}", text)
    add_event("health", text)


def _mode(e: Event) -> None:
    f = e.fields
    if f["ok"]:
        text = (f"quorum back ({f['available']} of {f['size']} nodes): accepting appends "
                "again")
        logger.warning("{}", text)
    else:
        text = f"read-only: {f['reason']}"
        logger.error("{}", text)
    add_event("mode", text)


def _discovered(e: Event) -> None:
    logger.info("discovered {} at {} (cluster size {})", e.name, e.fields["uri"],
                e.fields["size"])
    add_event("discovered", f"discovered {e.name} (cluster size {e.fields['size']})")


def _moved(e: Event) -> None:
    logger.info("{} registered again at {}", e.name, e.fields["uri"])
    add_event("discovered", f"{e.name} registered again at a new address")


def _left(e: Event) -> None:
    logger.warning("{} left (unregistered and Unhealthy): forgotten; cluster size {}",
                   e.name, e.fields["size"])
    add_event("left", f"{e.name} left: cluster size {e.fields['size']}")


def _disk_failed(e: Event) -> None:
    logger.critical("read-only: {}; {} waiting appends failed, no further appends are "
                    "acknowledged", e.fields["reason"], e.fields["failed_waits"])
    add_event("mode", f"read-only: {e.fields['reason']}")


def _deposed(e: Event) -> None:
    logger.warning("{}: {} waiting appends failed (each may or may not survive)",
                   e.fields["reason"], e.fields["failed_waits"])


REPORTERS = {"restart": _restart, "catchup": _catchup, "caught_up": _caught_up,
             "health": _health, "mode": _mode, "discovered": _discovered, "moved": _moved,
             "left": _left, "disk_failed": _disk_failed,
             "deposed": _deposed}


def report(event: Event) -> None:
    REPORTERS[event.kind](event)
