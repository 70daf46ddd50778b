"""Summarise py-spy ``--format raw`` output (collapsed stacks) by function.

    python -m bench.profile_summary PROFILE.txt [--top 30] [--contains TEXT]

Prints, for the hottest functions, the share of samples in which the function is on the
stack (inclusive) and is the leaf (self), with module paths shortened. ``--contains TEXT``
keeps only the stacks with a frame containing TEXT (a function or file name).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def frame_key(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{short_file(m.group('file'))}:{m.group('func')}"


def load(path: str):
    stacks = []
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            stacks.append((stack.split(";"), n))
    return stacks


def summarise(stacks, top: int, contains: str | None = None) -> str:
    total = 0
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    for frames, n in stacks:
        if contains and not any(contains in f for f in frames):
            continue
        total += n
        keys = [frame_key(f) for f in frames]
        for k in set(keys):
            inclusive[k] += n
        if keys:
            leaf[keys[-1]] += n
    if not total:
        return "no samples"
    out = [f"{total} samples" + (f" (stacks containing {contains!r})" if contains else "")]
    out.append(f"{'incl %':>7} {'self %':>7}  function")
    for k, n in inclusive.most_common(top):
        out.append(f"{100 * n / total:7.1f} {100 * leaf.get(k, 0) / total:7.1f}  {k}")
    out.append("")
    out.append("hottest leaves (self time):")
    for k, n in leaf.most_common(top):
        out.append(f"{100 * n / total:7.1f}  {k}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__.split("\n")[0])
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--contains", default=None, help="only stacks with a frame containing this text")
    a = p.parse_args(argv)
    print(summarise(load(a.profile), a.top, a.contains))
    return 0


if __name__ == "__main__":
    sys.exit(main())
