"""Benchmark 1: encode() of each `_geo` template against its ms-swift parent, same samples."""
from __future__ import annotations

import gc
import json
import os
import random
from typing import List, Sequence

from . import Context, Figure, Goal
from .measure import env_vars, make_images, timed

# Samples per family: every family with a tiny checkpoint is measured (12 families at the time
# of writing), so each gets 60 samples x 4 rounds, about half a minute of encodes.
TEMPLATE_SAMPLES = (60, 6)
GOAL = 1.01
# Which parent stands for its family when the family has several (otherwise the first, sorted).
PREFERRED_PARENTS = ('qwen2_5_vl',)
# Image sizes (width, height), below 1.3 MP: about the size of a COCO image and smaller.
TEMPLATE_SIZES = ((64, 48), (160, 120), (224, 224), (320, 240), (300, 500), (448, 448),
                  (500, 375), (640, 480), (480, 640), (800, 600), (896, 448), (1000, 200),
                  (1024, 768), (1280, 720))


# --- 1. template overhead ------------------------------------------------------------------------------------
def template_samples(paths: Sequence[str], n: int, seed: int = 0) -> List[dict]:
    """``n`` grounding samples of 1-3 images each, drawn from ``paths``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        images = [rng.choice(paths) for _ in range(rng.randint(1, 3))]
        box = [rng.randint(0, 200), rng.randint(0, 200), rng.randint(201, 400), rng.randint(201, 400)]
        out.append({'messages': [
            {'role': 'user', 'content': '<image>' * len(images) + 'Locate the red box.'},
            {'role': 'assistant', 'content': json.dumps([{'bbox_2d': box, 'label': 'red box'}])}],
            'images': images})
    return out


def family_parents() -> List[str]:
    """One parent template per family that has a tiny checkpoint recipe."""
    from ...families import family_of
    from ...testing.tiny import parents
    by_family = {}
    for parent in parents():
        by_family.setdefault(family_of(parent)[0].name, []).append(parent)
    return sorted(next((p for p in PREFERRED_PARENTS if p in group), group[0]) for group in by_family.values())


def run(ctx: Context) -> List[Figure]:
    import torch

    import swift_ext.plugin  # noqa: F401  (registers the _geo templates)

    from ...runlog import ENV_DIR

    paths = make_images(os.path.join(ctx.work, 'template_images'), TEMPLATE_SIZES)
    samples = template_samples(paths, ctx.size(TEMPLATE_SAMPLES))
    figures = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker; keeps other load out of the timing
    try:
        with env_vars(**{ENV_DIR: os.path.join(ctx.work, 'template_runlog')}):
            for parent in family_parents():
                try:
                    figures += _measure_parent(ctx, parent, samples)
                except Exception as exc:  # one family's failure must not lose the others' figures
                    ctx.fail(1, f'{parent}: not measured: {type(exc).__name__}: {exc}')
    finally:
        torch.set_num_threads(threads)
    ctx.note(1, f'{len(samples)} samples of 1-3 images ({len(TEMPLATE_SIZES)} sizes from '
                f'64x48 to 1280x720, JPEG and PNG) for one parent template per family '
                f'({", ".join(family_parents())}), mode train, geometry log on, torch 1 thread; '
                'a round encodes every sample with both templates back to back, once in each order')
    return figures


def _measure_parent(ctx: Context, parent_name: str, samples: Sequence[dict]) -> List[Figure]:
    from swift.model import get_processor
    from swift.template import get_template

    from ...testing.tiny import make_tiny_model, run_flags

    model = make_tiny_model(parent_name, os.path.join(ctx.work, f'tiny-{parent_name}'))
    proc = get_processor(model, model_type=run_flags(parent_name)['model_type'])
    parent = get_template(proc, template_type=parent_name)
    geo = get_template(proc, template_type=parent_name + '_geo')
    for tpl in (parent, geo):
        tpl.set_mode('train')
        for sample in samples[:3]:
            tpl.encode(sample)
    wall, cpu, parent_ms = [], [], []
    for _ in range(ctx.rounds_for(1)):
        a, b = _encode_round(parent, geo, samples)
        wall.append(b[0] / a[0])
        cpu.append(b[1] / a[1])
        parent_ms.append(a[0] / (2 * len(samples)) * 1e3)
    return [
        Figure(1, f'{parent_name}: parent encode', 'ms/sample', parent_ms),
        Figure(1, f'{parent_name}: _geo / parent, wall time', 'ratio', wall, Goal('<=', GOAL)),
        Figure(1, f'{parent_name}: _geo / parent, CPU time', 'ratio', cpu)]


def _encode_round(parent, geo, samples: Sequence[dict]):
    """(wall, cpu) seconds of the parent and the _geo template over the samples, interleaved.

    Each sample goes through both templates back to back, twice, in both orders. The
    second encode of a sample runs 3-7% faster than the first (allocator and caches warm),
    more than the effect measured: a round that ran every sample in one order only would
    fold that into the ratio. Back to back, load from other processes hits both alike.
    """
    a, b = [0.0, 0.0], [0.0, 0.0]
    gc.collect()
    for flip in (0, 1):
        for i, sample in enumerate(samples):
            order = ((parent, a), (geo, b)) if (i + flip) % 2 == 0 else ((geo, b), (parent, a))
            for tpl, acc in order:
                w, c = timed(lambda: tpl.encode(sample))
                acc[0] += w
                acc[1] += c
    return a, b
