"""Benchmark 2: geometry from the header vs decoding the image again (`fetch_image`), per image."""
from __future__ import annotations

import os

from . import Context, Figure, Goal
from .measure import interleaved, make_images

GEOMETRY_REPEATS = (50, 3)  # header passes per round (one pass is ~1 ms, too short to time)
GEOMETRY_SIZES = ((320, 240), (500, 375), (640, 480), (375, 500), (800, 600), (1024, 768),
                  (1280, 720), (1920, 1080), (2048, 1536), (4032, 3024), (1000, 40), (448, 448))


# --- 2. geometry without pixels ------------------------------------------------------------------------------------
def run(ctx: Context) -> list[Figure]:
    from qwen_vl_utils import fetch_image

    from ...families.qwen import qwen_geometry
    from ...images import image_key, read_image_size
    from ...rewards import geometry_for_images
    from ...settings import default_settings
    from ...store import STORE, row_limits_key

    sizes = GEOMETRY_SIZES[:4] if ctx.quick else GEOMETRY_SIZES
    paths = make_images(os.path.join(ctx.work, 'geometry_images'), sizes)
    sources = [{'bytes': None, 'path': p} for p in paths]  # what ms-swift hands a reward
    settings = default_settings('qwen2_5_vl_geo')
    for src in sources:  # as the template records it while encoding the prompt
        w, h = read_image_size(src)
        STORE.put(image_key(src), row_limits_key(None), settings.template,
                  settings.predict(width=w, height=h)[0])
    if any(geometry_for_images([s], settings)[0] is not STORE.get(
            image_key(s), row_limits_key(None), settings.template) for s in sources):
        raise RuntimeError('geometry_for_images did not return the stored record.')
    repeats = ctx.size(GEOMETRY_REPEATS)

    def header():
        for _ in range(repeats):
            for src in sources:
                w, h = read_image_size(src)
                qwen_geometry(width=w, height=h)

    def cached():
        for _ in range(repeats):
            for src in sources:
                geometry_for_images([src], settings)

    def decode():
        for src in sources:
            fetch_image({'image': src['path']}).size  # noqa: B018  (the reward's use of it)

    for warm in (header, cached, decode):  # imports, PIL plugins, first-call caches
        warm()
    times = interleaved({'header': header, 'cached': cached, 'decode': decode}, ctx.rounds_for(2))
    n = len(sources)
    us = {k: [t / (n * (1 if k == 'decode' else repeats)) * 1e6 for t in v] for k, v in times.items()}
    ctx.note(2, f'{n} files ({", ".join(f"{w}x{h}" for w, h in sizes)}; JPEG and PNG), each '
                "given as ms-swift gives rewards: {'bytes': None, 'path': ...}; "
                'the page cache holds them (no disk reads in any variant)')
    return [
        Figure(2, 'read_image_size + qwen_geometry', 'us/image', us['header']),
        Figure(2, 'geometry_for_images, STORE hit', 'us/image', us['cached']),
        Figure(2, 'qwen_vl_utils.fetch_image (decode + resize)', 'us/image', us['decode']),
        Figure(2, 'fetch_image / header', 'speed-up', [d / h for d, h in zip(us['decode'], us['header'], strict=False)],
               Goal('>=', 50)),
        Figure(2, 'fetch_image / STORE hit', 'speed-up',
               [d / c for d, c in zip(us['decode'], us['cached'], strict=False)])]
