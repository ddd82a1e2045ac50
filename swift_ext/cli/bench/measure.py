"""Shared by the benchmarks: clocks, interleaved rounds, environment and CPU pinning, generated images."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence


# --- timing helpers -------------------------------------------------------------------------------------
def timed(func: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(passes: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Wall seconds of each pass, once per round; the order rotates by one every round."""
    names = list(passes)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            out[name].append(timed(passes[name])[0])
    return out


@contextlib.contextmanager
def env_vars(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """Pin this thread to one CPU (the lowest it may use) for the duration."""
    if not hasattr(os, 'sched_setaffinity'):
        yield -1
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def steady_heap() -> Iterator[bool]:
    """glibc only: large blocks come from the heap and freed memory stays there, for the duration.

    By default a block over glibc's mmap threshold (128 KiB to 32 MiB, adjusted as it goes) is new memory
    from the kernel on every allocation, zeroed page by page on first touch: Llama 3.2 Vision's collate of
    the same 8 rows (30 MB of pixels a row) took 28 to 66 ms from one call to the next. Kept on the heap the
    same collate takes 22 ms every time, on both sides of a comparison (the parent's work gets cheaper, so
    a ratio reads higher, never lower). Yields whether the setting took. After it, both thresholds are back at
    glibc's default 128 KiB, but fixed: glibc's own raising of the mmap threshold as it goes stays off, so the
    benchmarks that run later in the same process see large blocks go straight back to the kernel.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        yield False
        return
    trim, mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
    took = bool(mallopt(mmap, 1 << 30) and mallopt(trim, (1 << 31) - 1))
    try:
        yield took
    finally:
        if took:
            mallopt(mmap, 128 * 1024)
            mallopt(trim, 128 * 1024)


# --- generated inputs -------------------------------------------------------------------------------------
def photo_like(width: int, height: int, seed: int):
    """A smooth picture with mild texture: decodes like a photo, unlike noise or a flat fill."""
    from PIL import Image, ImageFilter
    small = (max(1, width // 4), max(1, height // 4))
    noise = Image.effect_noise(small, 24 + seed % 16).filter(ImageFilter.GaussianBlur(1))
    grad = Image.linear_gradient('L').resize(small)
    img = Image.merge('RGB', (grad, noise, grad.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return img.resize((width, height), Image.Resampling.BILINEAR)


def make_images(folder: str, sizes: Sequence[tuple[int, int]]) -> list[str]:
    """One file per size, JPEG and PNG alternating; existing files are reused."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (width, height) in enumerate(sizes):
        path = os.path.join(folder, f'{i:02d}_{width}x{height}.{"png" if i % 2 else "jpg"}')
        if not os.path.exists(path):
            photo_like(width, height, i).save(path, quality=90)
        paths.append(path)
    return paths


def png_header(width: int, height: int) -> bytes:
    """A PNG holding only its signature, IHDR and IEND: every header reader takes its size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IEND', b'')
