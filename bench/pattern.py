"""The bulk-transfer pattern of the Python fallbacks (backend.py, pyclient.py).

The same bytes as backend.c and client.c make: byte j of each period is
``(j * 131 + (j >> 8) * 7 + 13) & 0xff``. It repeats every PERIOD bytes, a prime, so a slip by
any offset shows.
"""

from __future__ import annotations

PERIOD = 65521  # must match backend.c and client.c
PATTERN = bytes(((j * 131 + (j >> 8) * 7 + 13) & 0xFF) for j in range(PERIOD))
MAX_CHUNK = 65536
_PATTERN2 = PATTERN + PATTERN[:MAX_CHUNK]


def chunk(offset: int, n: int) -> bytes:
    """*n* (at most MAX_CHUNK) pattern bytes from stream *offset* on."""
    off = offset % PERIOD
    return _PATTERN2[off : off + n]


def mismatches(data: bytes, offset: int) -> int:
    """How many bytes of *data* differ from the pattern, *data* starting at stream *offset*."""
    bad = 0
    k = 0
    off = offset % PERIOD
    while k < len(data):
        m = min(len(data) - k, PERIOD - off)
        got, want = data[k : k + m], PATTERN[off : off + m]
        if got != want:  # the common case compares in C and counts nothing
            bad += sum(x != y for x, y in zip(got, want, strict=True))
        k += m
        off = 0
    return bad
