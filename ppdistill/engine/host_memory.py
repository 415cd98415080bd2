"""Hand the C heap's free memory back to the operating system after each training step.

On the CPU paddle returns every freed tensor to the C library's ``malloc`` at once (its host
"Reserved" bytes equal "Allocated"), but glibc keeps freed blocks below its mmap threshold (which
grows to 32 MiB as large blocks are freed, so a batch-32 recognition model's activations
qualify) inside the heap, resident, and only shrinks the heap from the top. A training step
frees gigabytes in an order that leaves holes, so the process' resident size after a step stays
near the step's peak and the holes grow from step to step. Measured on
``ch_PP-OCRv4_rec_distill.yml`` at batch 32 (paddle 3.3.1, glibc 2.36): after the step paddle
held 0.45 GiB while VmRSS stayed at 2.1 GiB (8.9 GiB before the student's rep layers were fused);
``malloc_trim(0)`` brought it to 0.87 GiB, and over four steps the peak (VmHWM) went from 2.41 to
2.30 GiB at no measurable cost in step time (the trimmed pages are faulted in again next step).

:func:`release_free_host_memory` calls glibc's ``malloc_trim(0)``, which returns the free pages
of every heap to the kernel (``madvise(MADV_DONTNEED)``) without moving live memory; the trainer
calls it once per step. Elsewhere (no glibc, e.g. macOS, Windows or musl) it does nothing.

Inference is the opposite case: a predictor runs the same program again and again, each run
allocating and freeing the same blocks. With glibc's defaults, blocks above the mmap threshold
(at most 32 MiB) are unmapped when freed and heap tops above the trim threshold are given back,
so the next run faults the same pages in again: an exported det student at 1x3x544x960 (paddle
3.3.1, 2 threads) took 3,000-18,000 page faults and 10-44 ms of kernel time per image in some
processes and not in others. :func:`keep_freed_host_memory`, called by the inference tools
before their first run, keeps blocks up to 1 GiB in the heap and up to 1 GiB of freed heap
resident: after the first run next to nothing is faulted in again (100-870 faults and
3-7 ms of kernel time per image there), at the same peak RSS.

``PPDISTILL_MALLOC_TRIM=0`` turns both off (glibc's defaults; the benchmark's baseline arm).
"""
import ctypes
import ctypes.util

from ppdistill.utils.switches import switch_on

__all__ = ["release_free_host_memory", "keep_freed_host_memory", "malloc_trim_enabled"]

#: glibc ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: what an inference process keeps in its heap (:func:`keep_freed_host_memory`)
INFERENCE_HEAP_KEEP = 1 << 30

_LIBC = []  # [handle or None], resolved once


def malloc_trim_enabled():
    """False when the environment variable ``PPDISTILL_MALLOC_TRIM`` is ``0``/``false``/``no``
    (ppdistill then leaves glibc's heap alone: no trimming, no :func:`keep_freed_host_memory`)."""
    return switch_on("PPDISTILL_MALLOC_TRIM")


def _glibc():
    if not _LIBC:
        handle = None
        try:
            candidate = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(candidate, "malloc_trim") and hasattr(candidate, "gnu_get_libc_version"):
                candidate.malloc_trim.argtypes = [ctypes.c_size_t]
                candidate.malloc_trim.restype = ctypes.c_int
                candidate.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                candidate.mallopt.restype = ctypes.c_int
                handle = candidate
        except OSError:
            handle = None
        _LIBC.append(handle)
    return _LIBC[0]


def release_free_host_memory():
    """Return the C heap's free pages to the OS (glibc ``malloc_trim(0)``).

    Returns True when memory was released, False when nothing was (no glibc, turned off, or no
    free page to give back). Live allocations are not touched.
    """
    if not malloc_trim_enabled():
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


def keep_freed_host_memory(limit=INFERENCE_HEAP_KEEP):
    """For a process that runs the same inference repeatedly: glibc serves blocks up to ``limit``
    bytes from the heap (falling back to its maximum of 32 MiB where a glibc refuses more) and
    keeps up to ``limit`` bytes of freed heap instead of returning them to the kernel, so runs
    after the first fault no pages in. Call it once, before the first run.

    Returns True when both settings took, False when nothing changed (no glibc, or
    ``PPDISTILL_MALLOC_TRIM=0``).
    """
    if not malloc_trim_enabled():
        return False
    libc = _glibc()
    if libc is None:
        return False
    limit = int(min(limit, 2 ** 31 - 1))
    if not any(libc.mallopt(M_MMAP_THRESHOLD, value) for value in (limit, 32 << 20)):
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, limit))
