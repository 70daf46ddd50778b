"""The on-disk record format: pure functions on bytes, no files.

A segment file is a sequence of records, one per written batch:

    magic  "RLG1"   4 bytes
    length          4 bytes, little-endian: bytes of payload
    first_seq       8 bytes, little-endian: seq of the batch's first message
    crc32           4 bytes: zlib.crc32 of (length, first_seq, payload)
    payload         JSON: ["m1", "m2", ...], or {"m": [...], "k": {"i": key}} when some
                    messages carry an idempotency key (i = index in the batch)

The header costs 20 bytes per batch; a batch of one 100-byte message takes 124 bytes.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Generator

MAGIC = b"RLG1"
HEADER = struct.Struct("<4sIQI")
_CRC_PART = struct.Struct("<IQ")
MAX_PAYLOAD = 256 << 20


class Corrupt(Exception):
    """A record that fails its checks where a crash cannot explain it."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"corrupt record at offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def encode(first_seq: int, messages: list[str], keys: dict[int, str] | None = None) -> bytes:
    body = {"m": messages, "k": {str(i): k for i, k in keys.items()}} if keys else messages
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    crc = zlib.crc32(payload, zlib.crc32(_CRC_PART.pack(len(payload), first_seq)))
    return HEADER.pack(MAGIC, len(payload), first_seq, crc) + payload


@dataclass
class Record:
    offset: int
    end: int
    first_seq: int
    messages: list[str]
    keys: dict[int, str] = field(default_factory=dict)


def _decode_at(buf: bytes | memoryview, offset: int) -> Record | str:
    """The record at offset, or the reason it is not a valid one."""
    if len(buf) - offset < HEADER.size:
        return "incomplete header"
    magic, length, first_seq, crc = HEADER.unpack_from(buf, offset)
    if magic != MAGIC:
        return "bad magic"
    end = offset + HEADER.size + length
    if length > MAX_PAYLOAD or end > len(buf):
        return "record runs past the end of the file"
    payload = buf[offset + HEADER.size:end]
    if zlib.crc32(payload, zlib.crc32(_CRC_PART.pack(length, first_seq))) != crc:
        return "checksum mismatch"
    try:
        body = json.loads(bytes(payload))
    except ValueError:
        return "payload is not JSON"
    if isinstance(body, list):
        return Record(offset, end, first_seq, body)
    if isinstance(body, dict) and isinstance(body.get("m"), list):
        return Record(offset, end, first_seq, body["m"],
                      {int(i): k for i, k in body.get("k", {}).items()})
    return "payload has an unknown shape"


def _any_valid_after(buf: bytes | memoryview, offset: int) -> int | None:
    """Offset of a valid record starting after `offset`, if any (found by its magic)."""
    data = bytes(buf)
    at = data.find(MAGIC, offset + 1)
    while at != -1:
        if isinstance(_decode_at(buf, at), Record):
            return at
        at = data.find(MAGIC, at + 1)
    return None


def scan(buf: bytes | memoryview, first_seq: int, tail_may_be_torn: bool
         ) -> Generator[Record, None, tuple[int, str | None]]:
    """Yield the records of one segment in order, checking that seqs follow on from
    first_seq; the generator's return value is (valid_end, why the rest was cut or None).

    A bad record with no valid record after it, in the newest segment (tail_may_be_torn),
    is a torn tail: a crash in mid-write. Anything else raises Corrupt."""
    offset, expect = 0, first_seq
    while offset < len(buf):
        rec = _decode_at(buf, offset)
        if isinstance(rec, str):
            later = _any_valid_after(buf, offset)
            if tail_may_be_torn and later is None:
                return offset, rec
            raise Corrupt(offset, rec + (f" (a valid record follows at offset {later})"
                                         if later is not None else " (in an older segment)"))
        if rec.first_seq != expect:
            raise Corrupt(offset, f"record starts at seq {rec.first_seq}, expected {expect}")
        if not rec.messages or not all(isinstance(m, str) for m in rec.messages):
            raise Corrupt(offset, "record holds no messages, or a non-string")
        yield rec
        expect += len(rec.messages)
        offset = rec.end
    return offset, None
