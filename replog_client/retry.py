"""Pure retry arithmetic (no clock, no randomness of its own): the backoff before retry
number ``attempt``, and how long a ``Retry-After`` header asks to wait."""
from __future__ import annotations

from typing import Callable


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Capped exponential backoff with jitter: ``min(cap, base * 2**(attempt-1))`` times a
    random factor in [0.5, 1) (``rand()`` gives [0, 1)), so that clients that failed
    together do not retry together. ``attempt`` counts from 1."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    return float(min(cap, base * 2.0 ** (attempt - 1)) * (0.5 + rand() / 2))


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a ``Retry-After: N`` header asks for, at most ``cap``; None when the header
    is missing or not a number of seconds (an HTTP date is not honoured: back off instead)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:      # NaN or negative
        return None
    return min(seconds, cap)
