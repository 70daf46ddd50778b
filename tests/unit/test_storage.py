"""The record format and the data directory, on hand-made files."""
import os

import pytest

from nodes.storage import format as fmt
from nodes.storage.wal import CorruptLog, Wal


def records(data, first=1, torn_ok=True):
    gen = fmt.scan(data, first, torn_ok)
    out = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as done:
            return out, done.value


def test_encode_scan_round_trip_with_keys_and_unicode():
    data = fmt.encode(1, ["a", "ü ✓"], {1: "k"}) + fmt.encode(3, ["c"])
    recs, (end, why) = records(data)
    assert [(r.first_seq, r.messages, r.keys) for r in recs] == [(1, ["a", "ü ✓"], {1: "k"}),
                                                                 (3, ["c"], {})]
    assert (end, why) == (len(data), None)


def test_header_overhead_is_small():
    assert len(fmt.encode(1, ["x" * 100])) == 100 + 20 + 4


@pytest.mark.parametrize("cut", [1, 10, 19, 21, 30])
def test_torn_tail_is_reported_not_raised(cut):
    good = fmt.encode(1, ["a"])
    data = good + fmt.encode(2, ["bbbbbbbbbbbbbbbbb"])[:cut]
    recs, (end, why) = records(data)
    assert [r.messages for r in recs] == [["a"]] and end == len(good) and why


def test_corruption_followed_by_a_valid_record_raises_with_the_offset():
    first = bytearray(fmt.encode(1, ["aaaa"]))
    first[-2] ^= 0xFF
    data = fmt.encode(1, ["x"])[:0] + bytes(first) + fmt.encode(2, ["b"])
    with pytest.raises(fmt.Corrupt) as e:
        records(data)
    assert e.value.offset == 0 and "checksum" in e.value.reason


def test_bad_tail_in_an_older_segment_raises():
    data = fmt.encode(1, ["a"]) + b"RLG1\x00"
    with pytest.raises(fmt.Corrupt):
        records(data, torn_ok=False)


def test_a_seq_that_does_not_follow_on_raises():
    with pytest.raises(fmt.Corrupt, match="expected 2"):
        records(fmt.encode(1, ["a"]) + fmt.encode(5, ["b"]))


def fill(path, n, per=3, segment_bytes=200):
    w = Wal(path, segment_bytes=segment_bytes)
    w.load()
    w.save_meta("L", [[1, 1]])
    for first in range(1, n + 1, per):
        batch = [f"m{s}" for s in range(first, min(n, first + per - 1) + 1)]
        w.append(first, batch, {0: f"k{first}"})
    w.sync()
    w.close()


def test_wal_round_trip_across_segments(tmp_path):
    fill(tmp_path, 40)
    assert len(os.listdir(tmp_path / "segments")) > 2
    loaded = Wal(tmp_path).load()
    assert loaded.log_id == "L" and loaded.history == [[1, 1]]
    assert loaded.messages == [f"m{s}" for s in range(1, 41)]
    assert loaded.keys["k4"] == 4 and loaded.cut is None


def test_wal_keys_are_bounded_newest_kept(tmp_path):
    fill(tmp_path, 30)
    keys = Wal(tmp_path).load(max_keys=2).keys
    assert list(keys) == ["k25", "k28"]


def test_wal_cuts_a_torn_tail_and_appends_after_it(tmp_path):
    fill(tmp_path, 10)
    newest = sorted((tmp_path / "segments").iterdir())[-1]
    size = newest.stat().st_size
    with open(newest, "ab") as f:
        f.write(fmt.encode(11, ["half-written"])[:15])
    w = Wal(tmp_path)
    loaded = w.load()
    assert len(loaded.messages) == 10 and "incomplete" in loaded.cut
    assert newest.stat().st_size == size
    w.append(11, ["m11"])
    w.sync()
    w.close()
    assert Wal(tmp_path).load().messages[-1] == "m11"


def test_wal_refuses_corruption_in_the_middle_and_changes_nothing(tmp_path):
    fill(tmp_path, 40)
    oldest = sorted((tmp_path / "segments").iterdir())[0]
    data = bytearray(oldest.read_bytes())
    data[30] ^= 0xFF
    oldest.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in (tmp_path / "segments").iterdir()}
    with pytest.raises(CorruptLog, match=f"{oldest.name}: offset 0"):
        Wal(tmp_path).load()
    assert {p.name: p.read_bytes() for p in (tmp_path / "segments").iterdir()} == before


def test_wal_refuses_a_missing_segment(tmp_path):
    fill(tmp_path, 40)
    middle = sorted((tmp_path / "segments").iterdir())[1]
    middle.unlink()
    with pytest.raises(CorruptLog, match="starts at seq"):
        Wal(tmp_path).load()


@pytest.mark.parametrize("keep", [0, 1, 5, 13, 39, 40])
def test_wal_truncate_keeps_exactly_the_prefix(tmp_path, keep):
    fill(tmp_path, 40)
    w = Wal(tmp_path, segment_bytes=200)
    w.load()
    w.truncate(keep)
    w.append(keep + 1, ["new"])
    w.sync()
    w.close()
    loaded = Wal(tmp_path).load()
    assert loaded.messages == [f"m{s}" for s in range(1, keep + 1)] + ["new"]


def test_store_modes_sync_as_they_say(tmp_path):
    import time as _time

    from nodes.storage.store import Store
    for mode, synced_at_once in (("always", 1), ("never", 0)):
        st = Store(tmp_path / mode, mode)
        st.load()
        st.write(1, ["a"])
        st.commit()
        assert st.syncs == synced_at_once
        st.close()
    st = Store(tmp_path / "interval", "interval", interval_ms=10)
    st.load()
    st.write(1, ["a"])
    st.commit()
    deadline = _time.monotonic() + 5
    while st.syncs == 0 and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert st.syncs == 1
    st.close()
    with pytest.raises(ValueError):
        Store(tmp_path / "x", "sometimes")


def test_a_data_directory_serves_one_process_at_a_time(tmp_path):
    import subprocess
    import sys
    from nodes.storage.wal import InUse
    w = Wal(tmp_path)
    w.load()
    other = subprocess.run([sys.executable, "-c", "import sys; from nodes.storage.wal import "
                            "Wal; Wal(sys.argv[1]).load()", str(tmp_path)],
                           capture_output=True, text=True)
    assert other.returncode != 0 and "InUse" in other.stderr
    with pytest.raises(InUse):
        Wal(tmp_path).load()            # another holder in this process too
    w.close()
    again = Wal(tmp_path)               # free once the holder closed it
    again.load()
    again.close()


def _files_held(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def test_sync_helper_syncs_the_file_it_is_given_and_reports_errors(tmp_path):
    import errno
    from nodes.storage.syncer import HelperGone, SyncHelper
    h = SyncHelper()
    try:
        a, b = (os.open(tmp_path / n, os.O_WRONLY | os.O_CREAT, 0o644) for n in ("a", "b"))
        ident = lambda fd: (os.fstat(fd).st_dev, os.fstat(fd).st_ino)   # noqa: E731
        os.write(a, b"x")
        h.sync(a)
        h.sync(a)                                  # the file is passed once, then reused
        assert ident(a) in _files_held(h.pid)
        h.sync(b)                                  # a new segment: the helper drops the old
        held = _files_held(h.pid)
        assert ident(b) in held and ident(a) not in held
        r, w = os.pipe()
        with pytest.raises(OSError) as e:          # fdatasync of a pipe: EINVAL, from the helper
            h.sync(r)
        assert e.value.errno == errno.EINVAL and not isinstance(e.value, HelperGone)
        h.proc.kill()
        h.proc.wait()
        with pytest.raises(HelperGone):
            h.sync(b)
        for fd in (a, b, r, w):
            os.close(fd)
    finally:
        h.close()


def test_store_syncs_in_a_helper_and_goes_on_without_it(tmp_path):
    from nodes.storage.store import Store
    st = Store(tmp_path, "always")
    st.load()
    st.save_meta("log", [[1, 0]])
    helper = st.helper
    assert helper is not None and helper.proc.poll() is None
    st.write(1, ["a"])
    st.commit()
    helper.proc.kill()
    helper.proc.wait()
    st.write(2, ["b"])
    st.commit()                                    # logged, then synced in this process
    assert st.helper is None and st.syncs == 2
    st.close()
    assert Wal(tmp_path).load().messages == ["a", "b"]
    never = Store(tmp_path / "never", "never")     # nothing to sync: no helper
    never.load()
    assert never.helper is None
    never.close()
    inplace = Store(tmp_path / "inplace", "always", offload=False)
    inplace.load()
    assert inplace.helper is None
    inplace.close()
