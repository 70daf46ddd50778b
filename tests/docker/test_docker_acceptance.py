"""The assignment's acceptance scenario on real containers.

Master + secondary1 start, secondary2 (2 s delay) does not:
  Msg1 w=1 -> ok; Msg2 w=2 -> ok; Msg3 w=3 -> waits; Msg4 w=1 -> ok while Msg3 waits;
  start secondary2 -> Msg3's POST returns; secondary2 holds [Msg1, Msg2, Msg3, Msg4].
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from .conftest import Cluster, post_at_once, wait_until

pytestmark = pytest.mark.docker


def test_acceptance_blocking_w3_and_catch_up(make_cluster) -> None:
    # As the assignment writes it: start M and S1, then send Msg1 at once. The client retries
    # only while nothing answers on the port yet (the container is still starting); it waits
    # for no status, and its first HTTP answer must be the 201.
    c: Cluster = make_cluster(("nameserver", "master", "secondary1"), wait=False,
                              SECONDARY2_DELAY="2")
    first = post_at_once(c, "Msg1", w=1)
    assert first.get("status") == 201, first
    assert json.loads(first["body"])["seq"] == 1
    r = c.post("Msg2", w=2)
    assert r.status_code == 201, r.text

    result: dict = {}

    def post_msg3() -> None:
        try:
            with requests.Session() as s:
                result["response"] = c.post("Msg3", w=3, timeout=120, session=s)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            result["error"] = e
        result["done_at"] = time.monotonic()

    msg3 = threading.Thread(target=post_msg3, name="Msg3", daemon=True)
    msg3.start()
    # Msg3 is in the log (seq 3) but cannot get its third ACK.
    wait_until(lambda: c.health()["last_seq"] == 3, 30, what="Msg3 to be appended as seq 3")
    assert msg3.is_alive(), f"Msg3 w=3 answered without secondary2: {result}"

    t0 = time.monotonic()
    r = c.post("Msg4", w=1)
    assert r.status_code == 201, r.text
    assert r.json()["seq"] == 4
    assert time.monotonic() - t0 < 5
    assert msg3.is_alive(), f"Msg3 w=3 answered without secondary2: {result}"
    assert c.messages("master") == ["Msg1", "Msg2", "Msg3", "Msg4"]

    started = time.monotonic()
    c.up("secondary2")
    msg3.join(timeout=90)
    assert not msg3.is_alive(), "Msg3 w=3 still waiting 90 s after secondary2 started"
    assert "error" not in result, result
    assert result["response"].status_code == 201, result["response"].text
    assert result["response"].json()["seq"] == 3
    assert result["done_at"] >= started

    expected = ["Msg1", "Msg2", "Msg3", "Msg4"]
    wait_until(lambda: c.messages("secondary2") == expected, 60,
               what="secondary2 to hold [Msg1, Msg2, Msg3, Msg4]")
    assert c.messages("secondary1") == expected
    assert c.messages("master") == expected
    c.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy"})
