"""Large fold buffers go back to the operating system when a flush frees them.

glibc's malloc serves a request above ``M_MMAP_THRESHOLD`` with its own ``mmap`` (unmapped on
free), but raises that threshold dynamically, up to 32 MiB, each time such a block is freed.
After a few flushes the column fold's arrays and ``rows()``'s lists (megabytes each) come from
the heap instead, and freed heap memory is kept by the process: RSS ratchets towards several
times ``--max-fold-mb``. Setting the threshold once turns the dynamic raise off, so memory
bounded in bytes stays bounded in RSS. Other C libraries: nothing to do (a no-op).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("tally.aggregator")

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks of 1 MiB and more are mmapped and unmapped on free


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; the allocator keeps its own policy")
    return done
