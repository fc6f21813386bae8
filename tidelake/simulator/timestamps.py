"""RFC 3339 timestamps as the simulator writes them: UTC, millisecond precision, ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLIS = [f".{i:03d}Z" for i in range(1000)]


def format_ms(ms: int) -> str:
    """Format epoch milliseconds as ``2026-11-21T23:40:04.004Z`` (any year 1-9999)."""
    sec, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + _MILLIS[milli]


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


class MsFormatter:
    """:func:`format_ms` with the seconds part cached: consecutive events share their second."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        sec, milli = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return self._prefix + _MILLIS[milli]
