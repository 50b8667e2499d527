"""Handing memory the worker's ended sessions freed back to the system.

glibc's malloc keeps freed memory in its heaps (one arena per thread that allocated, and
a session's audio buffers, decoder and database threads allocate plenty) for the next
allocation; the process's RSS stays at its peak after the sessions end. `malloc_trim`
returns the free pages of every arena. Python has no call for it, hence ctypes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache


@cache
def _malloc_trim() -> "ctypes._NamedFuncPointer | None":
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back this way
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the heaps' free pages to the system; False where the C library cannot.

    ctypes releases the GIL for the call, so a thread can run it (it walks every arena).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux's /proc; 0.0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0
