"""Host arrays moved onto transparent huge pages (model/host_memory.py): values unchanged, the kernel reports the
buffer's memory on huge pages where it can, and nothing happens (no error) where it cannot."""

import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import generate as G
from model import gpt
from model.config import get_config
from model.host_memory import MIN_ARRAY_BYTES, back_with_huge_pages, huge_page_bytes


def _huge_kb_over(address: int, nbytes: int) -> int:
    """AnonHugePages (kB) of the mappings that overlap [address, address + nbytes) (/proc/self/smaps; a buffer can
    span two): what the kernel reports for that buffer's memory, whether its pages became huge now or earlier in the
    process (memory is reused)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo < address + nbytes and address < hi
            elif inside and line.startswith("AnonHugePages:"):
                total += int(line.split()[1])
    return total


def _collapse_supported() -> bool:
    """Linux with transparent huge pages not switched off and a kernel that has MADV_COLLAPSE (6.1+)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            if "[never]" in f.read():
                return False
    except OSError:
        return False
    release = tuple(int(p) for p in platform.release().split(".")[:2] if p.isdigit())
    return release >= (6, 1)


needs_collapse = pytest.mark.skipif(not _collapse_supported(), reason="needs Linux 6.1+ with transparent huge pages")


def _kernel_collapses_now() -> bool:
    """Whether the kernel collapses a fresh anonymous mapping right now (it refuses when no free huge page is left):
    checked apart from model/host_memory.py, so that a skip never hides a fault of ours."""
    import ctypes
    import mmap

    page = huge_page_bytes()
    region = mmap.mmap(-1, 2 * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # as malloc's memory: not shmem
    region.write(b"x" * (2 * page))
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    start = -(-address // page) * page
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(start, page, 25) == 0  # MADV_COLLAPSE on the whole huge page inside the region


def _moved_or_skip(moved: int) -> int:
    if moved == 0 and not _kernel_collapses_now():
        pytest.skip("the kernel collapses no range now (no free huge page)")
    return moved


@needs_collapse
def test_a_large_host_array_moves_onto_huge_pages_with_its_values_unchanged():
    values = np.arange(4 * huge_page_bytes() // 4, dtype=np.float32)  # four huge pages of float32
    x = jnp.asarray(values)
    moved = _moved_or_skip(back_with_huge_pages({"w": x, "small": jnp.ones(8)}))
    assert moved >= 3 * huge_page_bytes()  # every whole huge page inside the buffer, at least
    assert _huge_kb_over(x.unsafe_buffer_pointer(), x.nbytes) >= 3 * huge_page_bytes() // 1024  # the kernel agrees
    np.testing.assert_array_equal(np.asarray(x), values)
    assert float(jnp.sum(x[:10])) == 45.0  # XLA still reads it


def test_small_arrays_and_plain_values_are_left_alone():
    assert back_with_huge_pages({"b": jnp.ones(MIN_ARRAY_BYTES // 8), "n": 3, "s": "x", "a": np.ones(4)}) == 0
    assert back_with_huge_pages([]) == 0


@needs_collapse
def test_prepared_decode_weights_say_how_much_sits_on_huge_pages_and_decode_the_same():
    cfg = get_config("tiny").replace(n_layers=2, vocab_size=4096, max_seq_len=64)  # wte 4096 x d: over 256 KiB
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s), jnp.float32), gpt.param_shapes(cfg),
                          is_leaf=lambda x: isinstance(x, tuple))
    w = G.prepare_weights(cfg, params, batch=1)
    assert _moved_or_skip(w.huge_page_bytes) >= huge_page_bytes()
    a = G.generate(cfg, w, [[1, 2, 3]], 8, eot_id=-1).tokens
    b = G.generate(cfg, params, [[1, 2, 3]], 8, eot_id=-1).tokens
    assert a == b


def test_huge_pages_larger_than_the_cap_are_not_used(monkeypatch):
    from model import host_memory

    monkeypatch.setattr(host_memory, "huge_page_bytes", lambda: 512 << 20)  # arm64 with 64 KiB base pages
    assert back_with_huge_pages({"w": jnp.ones(4 << 20)}) == 0
