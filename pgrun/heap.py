"""Keep freed memory in the process instead of handing it back to the OS after each update.

glibc's malloc serves a request above its mmap threshold (128 KiB at first, raised as
such blocks are freed) with a fresh mmap, and trims the heap top once more than twice
that threshold is free, so a loop that allocates and frees the same large arrays every
step — a CNN's feature maps, a seed-stacked policy's (K, B, 64) activations — may take
them back from the OS each time and page-fault on every 4 KiB of them. Fixing both
thresholds keeps the memory, up to the process's peak use; no value changes. Measured on
Pong (`pgrun train env=Pong-v5 total_steps=5120`, runs alternated with the code before):
1.3–1.7M → 0.17M page faults and 3.0–3.9 → 0.8 s of system time per run. Linux with glibc
only; elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
# an Atari batch's frames as floats (1,024 × 4 × 84 × 84) are 116 MB; some glibc
# versions refuse an mmap threshold above 32 MiB (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
MMAP_THRESHOLDS = (256 << 20, 32 << 20)
TRIM_THRESHOLD = 512 << 20


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring); False where not applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mmap = any(mallopt(M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLDS)
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and mmap
