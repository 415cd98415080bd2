"""release_free_host_memory: free heap pages go back to the OS (glibc), off with the variable."""
import ctypes
import os

import pytest

from ppdistill.engine import host_memory
from ppdistill.engine.host_memory import release_free_host_memory

BLOCK = 64 << 10  # below glibc's default mmap threshold: served from the heap
BLOCKS = 512      # 32 MiB


def vm_rss_kib():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def glibc():
    libc = host_memory._glibc()
    if libc is None or not os.path.exists("/proc/self/status"):
        pytest.skip("needs glibc and /proc")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def test_free_heap_holes_are_returned(monkeypatch):
    monkeypatch.delenv("PPDISTILL_MALLOC_TRIM", raising=False)
    libc = glibc()
    blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS + 1)]
    assert all(blocks)
    for address in blocks:
        ctypes.memset(address, 1, BLOCK)  # make the pages resident
    pin = blocks.pop(max(range(len(blocks)), key=blocks.__getitem__))
    # the highest block stays: the heap cannot shrink from the top, the rest becomes a hole
    try:
        for address in blocks:
            libc.free(address)
        resident = vm_rss_kib()
        assert release_free_host_memory() is True
        released_mib = (resident - vm_rss_kib()) / 1024
        assert released_mib > 16, f"only {released_mib:.1f} MiB of 32 MiB of holes released"
    finally:
        libc.free(pin)


def test_turned_off_by_the_environment(monkeypatch):
    calls = []

    class FakeLibc:
        def malloc_trim(self, pad):
            calls.append(pad)
            return 1

    monkeypatch.setattr(host_memory, "_LIBC", [FakeLibc()])
    monkeypatch.setenv("PPDISTILL_MALLOC_TRIM", "0")
    assert release_free_host_memory() is False and calls == []
    monkeypatch.setenv("PPDISTILL_MALLOC_TRIM", "1")
    assert release_free_host_memory() is True and calls == [0]


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(host_memory, "_LIBC", [None])
    assert release_free_host_memory() is False


KEEP_PROBE = r"""
import ctypes, resource, sys
sys.path.insert(0, sys.argv[1])
from ppdistill.engine import host_memory
kept = host_memory.keep_freed_host_memory()
libc = host_memory._glibc()
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 48 << 20  # above glibc's largest mmap threshold: unmapped on free by default
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, max(faults[1:]))
"""


def run_keep_probe(environment_value):
    import subprocess
    import sys
    env = dict(os.environ)
    env.pop("PPDISTILL_MALLOC_TRIM", None)
    if environment_value is not None:
        env["PPDISTILL_MALLOC_TRIM"] = environment_value
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", KEEP_PROBE, repo], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kept, faults = done.stdout.split()
    return kept == "True", int(faults)


def test_inference_processes_keep_freed_blocks_resident():
    """keep_freed_host_memory: a 48 MiB block freed and allocated again faults no pages in
    (glibc's default unmaps it and faults all 12,288 pages in again each time)."""
    glibc()
    kept, faults = run_keep_probe(None)
    assert kept and faults < 1000, faults
    kept, faults = run_keep_probe("0")  # the switch leaves glibc's defaults
    assert not kept and faults > 10000, faults
