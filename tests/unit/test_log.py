import pytest

from nodes.core.log import MasterLog, Refused, SecondaryLog


def test_master_log_numbers_messages_from_one():
    log = MasterLog()
    assert [log.append(m)[0] for m in "abc"] == [1, 2, 3]
    assert log.messages() == ["a", "b", "c"]
    assert log.last_seq == 3


def test_master_log_idempotency_key_returns_first_seq():
    log = MasterLog()
    assert log.append("a", key="k1") == (1, True)
    assert log.append("b") == (2, True)
    assert log.append("a again", key="k1") == (1, False)
    assert log.messages() == ["a", "b"]


def test_master_log_extend_and_entries_respect_count_and_bytes():
    log = MasterLog()
    assert log.extend(["aa", "bb", "cc", "dd"]) == (1, 4)
    assert log.entries(2, 10, 1000) == ["bb", "cc", "dd"]
    assert log.entries(1, 2, 1000) == ["aa", "bb"]
    assert log.entries(1, 10, 5) == ["aa", "bb"]
    # one oversized message still goes alone
    assert log.entries(1, 10, 1) == ["aa"]
    assert log.entries(5, 10, 1000) == []


def test_replica_in_order_and_ack():
    r = SecondaryLog()
    res = r.store(1, ["a", "b"])
    assert (res.ack, res.stored, res.duplicates) == (2, 2, 0)
    assert r.messages() == ["a", "b"]


def test_replica_drops_duplicates():
    r = SecondaryLog()
    r.store(1, ["a", "b"])
    res = r.store(1, ["a", "b", "c"])
    assert (res.ack, res.stored, res.duplicates) == (3, 1, 2)
    assert r.messages() == ["a", "b", "c"]
    res = r.store(2, ["b"])
    assert (res.ack, res.stored, res.duplicates) == (3, 0, 1)


def test_replica_holds_back_after_a_gap():
    r = SecondaryLog()
    r.store(1, ["m1", "m2"])
    res = r.store(4, ["m4"])
    assert res.ack == 2 and r.held_back == 1
    assert r.messages() == ["m1", "m2"]
    res = r.store(4, ["m4"])          # a duplicate of a held message
    assert res.duplicates == 1 and r.held_back == 1
    res = r.store(3, ["m3"])
    assert res.ack == 4 and r.held_back == 0
    assert r.messages() == ["m1", "m2", "m3", "m4"]


def test_replica_reversed_delivery_converges():
    r = SecondaryLog()
    for seq in range(10, 0, -1):
        r.store(seq, [f"m{seq}"])
        assert r.messages() == ([] if seq > 1 else [f"m{i}" for i in range(1, 11)])
    assert r.ack == 10


def test_replica_batch_overlapping_prefix_and_gap():
    r = SecondaryLog()
    r.store(1, ["a"])
    r.store(5, ["e"])
    res = r.store(1, ["a", "b", "c"])
    assert res.ack == 3 and res.duplicates == 1 and r.held_back == 1
    res = r.store(3, ["c", "d", "e", "f"])
    assert res.ack == 6 and r.messages() == list("abcdef") and r.held_back == 0


def test_replica_sync_adopts_a_log_only_when_empty_or_explicitly_new():
    r = SecondaryLog()
    assert r.sync("one", [[1, 1]], 0).keep == 0 and r.log_id == "one"
    r.store(1, ["a", "b"])
    with pytest.raises(Refused):
        r.sync("two", [[1, 1]], 5)        # a rogue or confused caller: the log stays
    assert r.log_id == "one" and r.messages() == ["a", "b"]
    res = r.sync("two", [[1, 1]], 0, new_log=True)
    assert res.new_log and res.dropped == ["a", "b"] and r.ack == 0 and r.log_id == "two"


def test_replica_sync_keeps_the_common_prefix_and_cuts_the_rest():
    r = SecondaryLog()
    r.sync("L", [[1, 1]], 0)
    r.store(1, ["a", "b", "c", "d"])
    # the master restarted after seq 2 (epoch 2 from seq 3): c and d are not in its log
    res = r.sync("L", [[1, 1], [2, 3]], 5)
    assert res.keep == 2 and res.dropped == ["c", "d"] and r.epoch == 2
    # the same epoch and a longer master log: everything stays
    r.store(3, ["C"])
    assert r.sync("L", [[1, 1], [2, 3]], 9).keep == 3


def test_replica_refuses_another_log_a_stale_epoch_or_far_ahead():
    r = SecondaryLog(max_ahead=10)
    r.sync("L", [[1, 1], [3, 1]], 0)
    r.check("L", 3, 1)
    for args in [("X", 3, 1), ("L", 2, 1), ("L", 3, 12)]:
        with pytest.raises(Refused):
            r.check(*args)
    r.check("L", 3, 11)


def test_master_log_batch_key_names_the_last_seq_and_is_written_with_it():
    log = MasterLog(track_keys=True)
    log.append("a")
    assert log.extend(["b", "c", "d"], key="batch") == (2, 4)
    assert log.seq_of("batch") == 4
    # the group commit writes 1..4 as one record: the key goes with index 3 (seq 4)
    assert log.take_keys(1, 4) == {3: "batch"}
    assert log.take_keys(1, 4) == {}


def test_master_log_batch_keys_are_bounded_like_single_ones():
    log = MasterLog(max_keys=2)
    log.extend(["a", "b"], key="k1")
    log.append("c", key="k2")
    log.extend(["d"], key="k3")
    assert (log.seq_of("k1"), log.seq_of("k2"), log.seq_of("k3")) == (None, 3, 4)
