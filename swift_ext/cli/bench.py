"""`swift-ext bench`: does swift-ext slow a training loop? Five measurements, each beside its goal.

1. template  encode() of each `_geo` template vs its ms-swift parent, same samples.
2. geometry  header read + arithmetic vs decoding the image again (`fetch_image`), per image.
3. reward    ``iou_score`` completions per second on one core, vs a regex-and-loop reward.
4. grpo      tiny-model GRPO steps per second with and without the `_geo` template, the
             geometry rewards and the `geo_log` callback (ms-swift's own `rlhf_main`).
5. scale     `swift-ext review` on 1,000,000 geometry lines, `swift-ext plan` on 100,000 images.

Ratios are measured side by side in one process, A and B interleaved with the order
alternating, because absolute times on a shared machine drift. Every figure is reported as
min / median / max over rounds; a goal is judged on the median of wall-clock figures (peak
memory: on the max). CPU-time ratios are printed beside the wall ones: on a loaded machine
they show the work done, without the time other processes took.
``--quick`` runs tiny sizes and few rounds: it checks the benchmark works, not the timings.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import logging
import math
import os
import platform
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .plugin_path import plugin_path

BENCHES = (1, 2, 3, 4, 5)
NAMES = {1: 'template', 2: 'geometry', 3: 'reward', 4: 'grpo', 5: 'scale'}
# (full, quick) sizes; rounds can be overridden with --rounds.
ROUNDS = {1: (4, 1), 2: (7, 2), 3: (7, 2), 4: (3, 1), 5: (3, 1)}
TEMPLATE_SAMPLES = (200, 16)
GEOMETRY_REPEATS = (50, 3)  # header passes per round (one pass is ~1 ms, too short to time)
REWARD_COMPLETIONS = (2000, 200)
REWARD_REPEATS = (5, 1)
GRPO_STEPS = (8, 3)  # per run; the first GRPO_WARMUP steps are not timed
GRPO_WARMUP = (2, 1)
REVIEW_LINES = (1_000_000, 20_000)
PLAN_IMAGES = (100_000, 2_000)

# Image sizes (width, height). Template samples stay below 1.3 MP so 5 rounds of 200
# InternVL samples (up to 13 tiles each) fit in minutes; the geometry set is a typical
# grounding mix up to a 12 MP phone photo.
TEMPLATE_SIZES = ((64, 48), (160, 120), (224, 224), (320, 240), (300, 500), (448, 448),
                  (500, 375), (640, 480), (480, 640), (800, 600), (896, 448), (1000, 200),
                  (1024, 768), (1280, 720))
GEOMETRY_SIZES = ((320, 240), (500, 375), (640, 480), (375, 500), (800, 600), (1024, 768),
                  (1280, 720), (1920, 1080), (2048, 1536), (4032, 3024), (1000, 40), (448, 448))
GRPO_SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('portrait', 240, 320),
              ('wide', 600, 100), ('square', 224, 224))
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
               'MODELSCOPE_OFFLINE': '1', 'USE_HF': '1'}
STEP_FILE_ENV = 'SWIFT_EXT_BENCH_STEPS'


# --- figures and goals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Goal:
    """``median <op> threshold`` (or another statistic) for one figure."""

    op: str  # '<=', '>=' or '<'
    threshold: float
    stat: str = 'median'
    text: str = ''

    def met(self, value: float) -> bool:
        return {'<=': value <= self.threshold, '>=': value >= self.threshold,
                '<': value < self.threshold}[self.op]

    def describe(self) -> str:
        base = self.text or f'{self.op} {_fmt(self.threshold)}'
        return base if self.stat == 'median' else f'{base} ({self.stat})'


@dataclass
class Figure:
    """One measured quantity: a value per round (or per run), and its goal if it has one."""

    bench: int
    name: str
    unit: str
    values: List[float]
    goal: Optional[Goal] = None

    def summary(self) -> Dict[str, float]:
        return {'min': min(self.values), 'median': statistics.median(self.values),
                'max': max(self.values)}

    def passed(self) -> Optional[bool]:
        if self.goal is None:
            return None
        return self.goal.met(self.summary()[self.goal.stat])

    def to_dict(self) -> dict:
        goal = None if self.goal is None else {
            'op': self.goal.op, 'threshold': self.goal.threshold, 'stat': self.goal.stat,
            'text': self.goal.describe()}
        return {'bench': self.bench, 'name': self.name, 'unit': self.unit, 'goal': goal,
                'values': self.values, **self.summary(), 'passed': self.passed()}


@dataclass
class Context:
    """What every benchmark shares: sizes, rounds, a scratch folder, notes for the report."""

    quick: bool
    rounds: Optional[int]
    work: str
    notes: Dict[int, List[str]] = field(default_factory=dict)

    def size(self, pair: Tuple) -> int:
        return pair[1] if self.quick else pair[0]

    def rounds_for(self, bench: int) -> int:
        return self.rounds or self.size(ROUNDS[bench])

    def note(self, bench: int, text: str) -> None:
        self.notes.setdefault(bench, []).append(text)


def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f'{value:,.0f}'
    return f'{value:.4g}'


# --- timing helpers -------------------------------------------------------------------------------------
def _timed(func: Callable[[], object]) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(passes: Dict[str, Callable[[], object]], rounds: int) -> Dict[str, List[float]]:
    """Wall seconds of each pass, once per round; the order rotates by one every round."""
    names = list(passes)
    out: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            out[name].append(_timed(passes[name])[0])
    return out


@contextlib.contextmanager
def _env(**values: Optional[str]) -> Iterator[None]:
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
def _one_core() -> Iterator[int]:
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


# --- generated inputs -------------------------------------------------------------------------------------
def photo_like(width: int, height: int, seed: int):
    """A smooth picture with mild texture: decodes like a photo, unlike noise or a flat fill."""
    from PIL import Image, ImageFilter
    small = (max(1, width // 4), max(1, height // 4))
    noise = Image.effect_noise(small, 24 + seed % 16).filter(ImageFilter.GaussianBlur(1))
    grad = Image.linear_gradient('L').resize(small)
    img = Image.merge('RGB', (grad, noise, grad.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return img.resize((width, height), Image.Resampling.BILINEAR)


def make_images(folder: str, sizes: Sequence[Tuple[int, int]]) -> List[str]:
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


def _jpeg_with_size(template: bytes, sof: int, width: int, height: int) -> bytes:
    return template[:sof + 5] + struct.pack('>HH', height, width) + template[sof + 9:]


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


def bench_template(ctx: Context) -> List[Figure]:
    import torch

    import swift_ext.plugin  # noqa: F401  (registers the _geo templates)
    from swift.model import get_processor
    from swift.template import get_template

    from ..runlog import ENV_DIR
    from ..testing.tiny import make_tiny_model, run_flags

    paths = make_images(os.path.join(ctx.work, 'template_images'), TEMPLATE_SIZES)
    samples = template_samples(paths, ctx.size(TEMPLATE_SAMPLES))
    rounds = ctx.rounds_for(1)
    figures = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker; keeps other load out of the timing
    try:
        with _env(**{ENV_DIR: os.path.join(ctx.work, 'template_runlog')}):
            for family in ('qwen2_5_vl', 'internvl_hf'):
                model = make_tiny_model(family, os.path.join(ctx.work, f'tiny-{family}'))
                proc = get_processor(model, model_type=run_flags(family)['model_type'])
                parent = get_template(proc, template_type=family)
                geo = get_template(proc, template_type=family + '_geo')
                for tpl in (parent, geo):
                    tpl.set_mode('train')
                    for sample in samples[:3]:
                        tpl.encode(sample)
                wall, cpu, parent_ms = [], [], []
                for _ in range(rounds):
                    a, b = _encode_round(parent, geo, samples)
                    wall.append(b[0] / a[0])
                    cpu.append(b[1] / a[1])
                    parent_ms.append(a[0] / (2 * len(samples)) * 1e3)
                figures += [
                    Figure(1, f'{family}: parent encode', 'ms/sample', parent_ms),
                    Figure(1, f'{family}: _geo / parent, wall time', 'ratio', wall,
                           Goal('<=', 1.02)),
                    Figure(1, f'{family}: _geo / parent, CPU time', 'ratio', cpu)]
    finally:
        torch.set_num_threads(threads)
    ctx.note(1, f'{len(samples)} samples of 1-3 images ({len(TEMPLATE_SIZES)} sizes from '
                f'64x48 to 1280x720, JPEG and PNG), mode train, geometry log on, torch 1 thread; '
                'a round encodes every sample with both templates back to back, once in each order')
    return figures


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
                w, c = _timed(lambda: tpl.encode(sample))
                acc[0] += w
                acc[1] += c
    return a, b


# --- 2. geometry without pixels ------------------------------------------------------------------------------------
def bench_geometry(ctx: Context) -> List[Figure]:
    from qwen_vl_utils import fetch_image

    from ..geometry import qwen_geometry, read_image_size
    from ..records import STORE, image_key, row_limits_key
    from ..rewards import geometry_for_images
    from ..settings import default_settings

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
        Figure(2, 'fetch_image / header', 'speed-up', [d / h for d, h in zip(us['decode'], us['header'])],
               Goal('>=', 50)),
        Figure(2, 'fetch_image / STORE hit', 'speed-up',
               [d / c for d, c in zip(us['decode'], us['cached'])])]


# --- 3. reward throughput --------------------------------------------------------------------------------
_ANSWER_RE = re.compile(r'<answer>(.*?)</answer>', re.DOTALL)
_INT_BOX_RE = re.compile(r'\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)]')


def regex_iou(completion: str, solution, *, input_width: int, input_height: int,
              image_width: int, image_height: int) -> float:
    """The widely used regex-and-loop IoU reward, re-implemented as the comparison baseline.

    The style of VLM-R1's ``iou_reward`` (open-r1-multimodal lineage): the first
    ``<answer>...</answer>``, the first ``[int, int, int, int]`` in it, scaled from the
    model's input frame to the image, one IoU (with the +1 pixel convention) against
    ``json.loads(solution)``; any exception scores 0.0. It reads one box and one
    ground-truth box only.
    """
    try:
        answer = _ANSWER_RE.search(completion)
        if answer is None:
            return 0.0
        found = _INT_BOX_RE.search(answer.group(1).strip())
        if found is None:
            return 0.0
        sx, sy = image_width / input_width, image_height / input_height
        x1, y1, x2, y2 = (int(v) for v in found.groups())
        box = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
        gt = json.loads(solution) if isinstance(solution, str) else solution
        ix1, iy1 = max(box[0], gt[0]), max(box[1], gt[1])
        ix2, iy2 = min(box[2] - 1, gt[2] - 1), min(box[3] - 1, gt[3] - 1)
        inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if ix1 < ix2 and iy1 < iy2 else 0
        union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
        return float(inter) / union
    except Exception:  # the style being reproduced: a crash scores as a wrong answer
        return 0.0


REWARD_MIX = (('single box', 0.35), ('multi-box', 0.20), ('malformed', 0.20),
              ('long reasoning', 0.25))


def reward_mix(n: int, seed: int = 0) -> List[Tuple[str, str, str, object]]:
    """``n`` (kind, completion, solution JSON, geometry) in the proportions of REWARD_MIX."""
    from ..geometry import qwen_geometry
    rng = random.Random(seed)
    sizes = ((640, 480), (1280, 720), (500, 375), (1920, 1080), (375, 500))
    geos = [qwen_geometry(width=w, height=h) for w, h in sizes]
    kinds = [k for k, share in REWARD_MIX for _ in range(round(share * 100))]
    out = []
    for i in range(n):
        kind, geo = kinds[i % len(kinds)], rng.choice(geos)
        count = rng.randint(2, 6) if kind == 'multi-box' else 1
        gt = [_random_box(rng, geo.original_width, geo.original_height) for _ in range(count)]
        pred = [[round(v + rng.uniform(-15, 15)) for v in geo.to_resized(b)] for b in gt]
        answer = json.dumps([{'bbox_2d': [max(0, v) for v in b], 'label': 'object'} for b in pred])
        if kind == 'malformed':
            answer = rng.choice([
                'I cannot find the object in this image.', answer[:rng.randint(5, len(answer) - 2)],
                '[{"bbox_2d": [12, 30, 55], "label": "cat"}]', '<answer>no box</answer>',
                f'the box is at {pred[0][0]}, {pred[0][1]} roughly', '{"bbox_2d": "left side"}'])
            completion = answer if rng.random() < 0.5 else f'<think>Looking.</think><answer>{answer}</answer>'
        elif kind == 'long reasoning':
            steps = ' '.join(f'Region {j} spans [{rng.randint(0, 900)}, {rng.randint(0, 900)}, '
                             f'{rng.randint(0, 900)}, {rng.randint(0, 900)}] and is not it.'
                             for j in range(rng.randint(30, 60)))
            completion = f'<think>{steps}</think><answer>```json\n{answer}\n```</answer>'
        else:
            completion = f'<think>The object is near the centre.</think><answer>```json\n{answer}\n```</answer>'
        out.append((kind, completion, json.dumps(gt if count > 1 else gt[0]), geo))
    return out


def _random_box(rng: random.Random, width: int, height: int) -> List[int]:
    x1, y1 = rng.randint(0, width // 2), rng.randint(0, height // 2)
    return [x1, y1, x1 + rng.randint(20, width // 2), y1 + rng.randint(20, height // 2)]


def bench_reward(ctx: Context) -> List[Figure]:
    from ..rewards import GeoIoU
    from ..scoring import iou_score

    items = reward_mix(ctx.size(REWARD_COMPLETIONS))
    repeats = ctx.size(REWARD_REPEATS)
    batch = 16
    reward = GeoIoU(argparse.Namespace(template='qwen2_5_vl_geo'))
    _put_reward_geometry(items)

    def ours():
        for _ in range(repeats):
            for _, completion, solution, geo in items:
                iou_score(completion, solution, geo, 'abs')

    def baseline():
        for _ in range(repeats):
            for _, completion, solution, geo in items:
                regex_iou(completion, solution, input_width=geo.resized_width,
                          input_height=geo.resized_height, image_width=geo.original_width,
                          image_height=geo.original_height)

    def reward_call():
        for _ in range(repeats):
            for start in range(0, len(items), batch):
                chunk = items[start:start + batch]
                reward([c for _, c, _, _ in chunk], solution=[s for _, _, s, _ in chunk],
                       images=[[_reward_image(g)] for _, _, _, g in chunk])

    by_kind = {kind: [it for it in items if it[0] == kind] for kind, _ in REWARD_MIX}

    def one_kind(kind):
        def run():
            for _ in range(repeats):
                for _, completion, solution, geo in by_kind[kind]:
                    iou_score(completion, solution, geo, 'abs')
        return run

    ours()  # warm: scipy is imported on the first multi-box call
    reward_call()
    passes = {'ours': ours, 'baseline': baseline, 'reward': reward_call,
              **{kind: one_kind(kind) for kind in by_kind}}
    with _one_core() as cpu:
        times = interleaved(passes, ctx.rounds_for(3))
    n = len(items) * repeats
    rate = {k: [n / t for t in times[k]] for k in ('ours', 'baseline', 'reward')}
    per_kind = [Figure(3, f'iou_score, {kind} only', 'us/completion',
                       [t / (len(by_kind[kind]) * repeats) * 1e6 for t in times[kind]])
                for kind in by_kind]
    counts = {k: sum(1 for kind, *_ in items if kind == k) for k, _ in REWARD_MIX}
    ctx.note(3, f'{len(items)} completions: ' + ', '.join(f'{v} {k}' for k, v in counts.items())
             + f'; pinned to CPU {cpu}. Baseline: `regex_iou` in swift_ext/bench.py, a '
             're-implementation of the VLM-R1 / open-r1-multimodal `iou_reward` style '
             r"(re.search(r'<answer>(.*?)</answer>'), re.search(r'\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)]'), "
             'json.loads of the solution, one IoU, `except Exception: 0.0`); it reads only the first '
             'box, so it scores multi-box answers wrongly, and it does no clipping or matching')
    return [
        Figure(3, 'iou_score', 'completions/s', rate['ours'], Goal('>=', 20_000)),
        Figure(3, 'regex-and-loop baseline', 'completions/s', rate['baseline']),
        Figure(3, 'GeoIoU reward call (batches of 16, STORE hits)', 'completions/s', rate['reward']),
        Figure(3, 'iou_score time / baseline time', 'ratio',
               [o / b for o, b in zip(times['ours'], times['baseline'])]), *per_kind]


def _reward_image(geo) -> dict:
    return {'bytes': None, 'path': f'/bench/{geo.original_width}x{geo.original_height}.jpg'}


def _put_reward_geometry(items) -> None:
    from ..records import STORE, image_key, row_limits_key
    for _, _, _, geo in items:
        STORE.put(image_key(_reward_image(geo)), row_limits_key(None), 'qwen2_5_vl_geo', geo)


# --- 4. GRPO steps ------------------------------------------------------------------------------------------
PLUGIN_SOURCE = '''"""Written by `swift-ext bench`: a step timer and the regex IoU reward of the plain run."""
from swift_ext.cli.bench import register_bench_plugin

register_bench_plugin()
'''


def register_bench_plugin() -> None:
    """Register `bench_step_timer` (callback) and `bench_regex_iou` (reward) with ms-swift."""
    from swift.callbacks import callbacks_map
    from swift.rewards import ORM, orms
    from transformers import TrainerCallback

    class BenchStepTimer(TrainerCallback):
        """Appends wall and process CPU clocks at train begin and every step end to $SWIFT_EXT_BENCH_STEPS."""

        def __init__(self, args=None, trainer=None):
            self.path = os.environ[STEP_FILE_ENV]

        def _mark(self, step: int) -> None:
            with open(self.path, 'a') as f:
                f.write(f'{step} {time.perf_counter()!r} {time.process_time()!r}\n')

        def on_train_begin(self, args, state, control, **kwargs):
            self._mark(0)

        def on_step_end(self, args, state, control, **kwargs):
            self._mark(state.global_step)

    class RegexIoU(ORM):
        """`regex_iou` as a GRPO reward: the image's header for its size, smart_resize for the frame."""

        def __call__(self, completions, solution=None, images=None, **kwargs):
            from PIL import Image
            from qwen_vl_utils import smart_resize
            out = []
            for completion, sol, imgs in zip(completions, solution, images):
                src = imgs[0]
                with Image.open(src['path'] if isinstance(src, dict) else src) as img:
                    width, height = img.size
                input_h, input_w = smart_resize(height, width, factor=28)
                out.append(regex_iou(completion, sol, input_width=input_w, input_height=input_h,
                                     image_width=width, image_height=height))
            return out

    callbacks_map['bench_step_timer'] = BenchStepTimer
    orms['bench_regex_iou'] = RegexIoU


def grpo_args(config: str, model: str, dataset: str, plugin: str, out: str, steps: int) -> List[str]:
    """The `swift rlhf` arguments of one run: config 'plain' or 'geo'."""
    common = ['--rlhf_type', 'grpo', '--model', model, '--model_type', 'qwen2_5_vl',
              '--dataset', dataset, '--num_generations', '2', '--per_device_train_batch_size', '4',
              '--max_completion_length', '16', '--max_steps', str(steps), '--tuner_type', 'lora',
              '--torch_dtype', 'float32', '--report_to', 'none', '--check_model', 'false',
              '--log_completions', 'true', '--output_dir', out, '--logging_steps', '1',
              '--save_strategy', 'no', '--dataloader_num_workers', '0', '--seed', '1',
              '--data_seed', '1']
    if config == 'plain':
        return common + ['--template', 'qwen2_5_vl', '--external_plugins', plugin,
                         '--reward_funcs', 'bench_regex_iou', 'format',
                         '--callbacks', 'bench_step_timer']
    return common + ['--template', 'qwen2_5_vl_geo', '--external_plugins',
                     plugin_path(), plugin,
                     '--reward_funcs', 'geo_iou', 'geo_format',
                     '--callbacks', 'geo_log', 'bench_step_timer']


def step_seconds(path: str, warmup: int) -> Tuple[List[float], List[float]]:
    """(wall, CPU) seconds of each step after the first ``warmup``, from the step timer's marks."""
    with open(path) as f:
        marks = [tuple(float(x) for x in line.split()[1:3]) for line in f if line.strip()]
    wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])][warmup:]
    cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:])][warmup:]
    return wall, cpu


def bench_grpo(ctx: Context) -> List[Figure]:
    from ..testing.images import make_dataset
    from ..testing.tiny import make_tiny_model

    model = make_tiny_model('qwen2_5_vl', os.path.join(ctx.work, 'tiny-qwen2_5_vl'))
    steps, warmup = ctx.size(GRPO_STEPS), ctx.size(GRPO_WARMUP)
    dataset = make_dataset(os.path.join(ctx.work, 'grpo_data'), sizes=GRPO_SIZES, repeat=steps)
    plugin = os.path.join(ctx.work, 'bench_plugin.py')
    with open(plugin, 'w') as f:
        f.write(PLUGIN_SOURCE)
    import torch
    wall: Dict[str, List[float]] = {'plain': [], 'geo': []}
    cpu: Dict[str, List[float]] = {'plain': [], 'geo': []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # so CPU time is the work done, not other load or spinning threads
    try:
        for r in range(ctx.rounds_for(4)):
            for config in (('plain', 'geo') if r % 2 == 0 else ('geo', 'plain')):
                w, c = _grpo_run(ctx, config, model, dataset, plugin, steps, warmup, r)
                wall[config].append(w)
                cpu[config].append(c)
    finally:
        torch.set_num_threads(threads)
    noise = max(cpu['plain']) / min(cpu['plain']) - 1
    wall_noise = max(wall['plain']) / min(wall['plain']) - 1
    ctx.note(4, f'{len(cpu["plain"])} in-process runs (`swift.rlhf_main`, the function behind '
                f'`swift rlhf`) of each configuration, alternating, torch 1 thread; {steps} steps per '
                f'run, the first {warmup} not timed; a run\'s figure is its median step time, '
                'measured between consecutive on_step_end calls (generation, rewards, logging and '
                'callbacks all count). 4 completions a step (2 prompts x 2 generations, 16 new '
                f'tokens), images {", ".join(f"{w}x{h}" for _, w, h in GRPO_SIZES)}. plain: template '
                'qwen2_5_vl, rewards bench_regex_iou + format; geo: qwen2_5_vl_geo, geo_iou + '
                f'geo_format, --callbacks geo_log. Noise = plain runs max/min - 1: wall {wall_noise:.1%}, '
                f'CPU {noise:.1%}; the goal is 1 + the wall noise (at least 2%)')
    ratio = lambda d: [g / p for p, g in zip(d['plain'], d['geo'])]  # noqa: E731
    limit = 1 + max(wall_noise, 0.02)
    return [
        Figure(4, 'plain: steps per second', 'steps/s', [1 / s for s in wall['plain']]),
        Figure(4, 'geo: steps per second', 'steps/s', [1 / s for s in wall['geo']]),
        Figure(4, 'geo / plain step time, wall', 'ratio', ratio(wall),
               Goal('<=', limit, text=f'<= {limit:.3f} (1+noise)')),
        Figure(4, 'geo / plain step time, CPU', 'ratio', ratio(cpu))]


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'a') as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _grpo_run(ctx: Context, config: str, model: str, dataset: str, plugin: str, steps: int,
              warmup: int, r: int) -> Tuple[float, float]:
    from swift import rlhf_main

    from ..runlog import ENV_DIR

    out = os.path.join(ctx.work, 'grpo_runs', f'{config}-{r}')
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    marks, log = os.path.join(out, 'steps.txt'), os.path.join(out, 'run.log')
    try:  # the geo_log callback sets ENV_DIR for its run; _env takes it away again after
        with _env(**{STEP_FILE_ENV: marks, ENV_DIR: None}), _output_to(log):
            rlhf_main(grpo_args(config, model, dataset, plugin, out, steps))
    except (Exception, SystemExit) as exc:
        raise RuntimeError(f'GRPO run {config}-{r} failed; its output is in {log}') from exc
    gc.collect()
    wall, cpu = step_seconds(marks, warmup)
    return statistics.median(wall), statistics.median(cpu)


# --- 5. review and plan at scale ---------------------------------------------------------------------------------
def write_geometry_log(run_dir: str, lines: int, seed: int = 0) -> None:
    """A run folder with ``lines`` image_geometry records (the run-log schema) and a logging.jsonl."""
    from ..settings import default_settings
    rng = random.Random(seed)
    settings = default_settings('qwen2_5_vl_geo')
    pool = []
    for _ in range(2000):
        w, h = rng.randint(32, 4096), rng.randint(32, 4096)
        geo, clamped = settings.predict(width=w, height=h)
        rest = {k: v for k, v in geo.to_dict().items() if k not in ('original_width', 'original_height')}
        pool.append(f'"original_width":{w},"original_height":{h},'
                    + json.dumps(rest, separators=(',', ':'))[1:-1]
                    + f',"clamped":{json.dumps(clamped)}')
    steps = max(1, lines // 1000)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, 'image_geometry.jsonl'), 'w') as f:
        chunk = []
        for i in range(lines):
            step, mode = i * steps // lines, 'rollout' if i % 2 == 0 else 'train'
            head = (f'{{"step":{step},"rank":0,"pid":4242,"mode":"{mode}","sample_id":"{i // 4:012x}",'
                    f'"image_index":{i % 2},"image":"/data/images/{rng.randrange(200_000)}.jpg",'
                    '"template":"qwen2_5_vl_geo",')
            if i % 1000 == 999:
                chunk.append(head + '"error":"image file does not exist.","time":1.0}\n')
            else:
                chunk.append(head + rng.choice(pool) + ',"mismatch":null,"error":null,"time":1.0}\n')
            if len(chunk) == 10_000:
                f.write(''.join(chunk))
                chunk = []
        f.write(''.join(chunk))
    with open(os.path.join(run_dir, 'logging.jsonl'), 'w') as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({'loss': rng.random(), 'reward': rng.random(),
                                'rewards/GeoIoU/mean': rng.random(), 'vision/tokens_mean': 300.0,
                                'global_step/max_steps': f'{step}/{steps}'}) + '\n')


def write_plan_dataset(folder: str, images: int, seed: int = 0) -> str:
    """``images`` header-only image files (PNG and JPEG, mixed sizes) and a dataset over them."""
    from PIL import Image
    rng = random.Random(seed)
    buf = io.BytesIO()
    Image.new('RGB', (16, 16)).save(buf, format='JPEG')
    jpeg = buf.getvalue()
    sof = jpeg.index(b'\xff\xc0')
    os.makedirs(folder, exist_ok=True)
    rows, row, target = [], [], rng.randint(1, 3)
    for i in range(images):
        sub = os.path.join(folder, f'{i // 1000:03d}')
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        w, h = rng.randint(64, 4096), rng.randint(64, 4096)
        path = os.path.join(sub, f'{i}.{"png" if i % 3 == 0 else "jpg"}')
        with open(path, 'wb') as f:
            f.write(png_header(w, h) if i % 3 == 0 else _jpeg_with_size(jpeg, sof, w, h))
        row.append(path)
        if len(row) == target or i == images - 1:
            entry = {'messages': [{'role': 'user', 'content': '<image>' * len(row) + 'Where?'}],
                     'images': row, 'solution': [1, 2, 3, 4]}
            if len(rows) % 20 == 0:
                entry['chat_template_kwargs'] = {'max_pixels': 401408}
            rows.append(json.dumps(entry))
            row, target = [], rng.randint(1, 3)
    dataset = os.path.join(folder, 'dataset.jsonl')
    with open(dataset, 'w') as f:
        f.write('\n'.join(rows) + '\n')
    return dataset


# Runs argv[2:] and writes [exit code, wall seconds, ru_maxrss KiB] of it to argv[1]. A small
# launcher because a child forked straight from this (large) process inherits its RSS high-water
# mark through fork + exec, and would report the benchmark's own memory as the command's.
_LAUNCHER = (
    'import json, os, subprocess, sys, time\n'
    'start = time.perf_counter()\n'
    'proc = subprocess.Popen(sys.argv[2:])\n'
    '_, status, usage = os.wait4(proc.pid, 0)\n'
    'wall = time.perf_counter() - start\n'
    'with open(sys.argv[1], "w") as f:\n'
    '    json.dump([os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss], f)\n')


def run_measured(cmd: Sequence[str], log: str) -> Tuple[float, float]:
    """(wall seconds, peak RSS in MB of its largest process) of a command run to completion."""
    result = log + '.measure.json'
    with open(log, 'w') as f:
        subprocess.run([sys.executable, '-c', _LAUNCHER, result, *cmd], stdout=f,
                       stderr=subprocess.STDOUT, env={**os.environ, 'TQDM_DISABLE': '1'}, check=True)
    with open(result) as f:
        code, wall, maxrss_kib = json.load(f)
    if code != 0:
        with open(log) as f:
            raise RuntimeError(f'{" ".join(cmd)} failed ({code}):\n{f.read()[-3000:]}')
    return wall, maxrss_kib / 1024  # ru_maxrss is in KiB on Linux


def bench_scale(ctx: Context) -> List[Figure]:
    lines, images = ctx.size(REVIEW_LINES), ctx.size(PLAN_IMAGES)
    run_dir = os.path.join(ctx.work, f'review_run_{lines}')
    if not os.path.exists(os.path.join(run_dir, 'logging.jsonl')):
        write_geometry_log(run_dir, lines)
    plan_dir = os.path.join(ctx.work, f'plan_{images}')
    dataset = os.path.join(plan_dir, 'dataset.jsonl')
    if not os.path.exists(dataset):
        dataset = write_plan_dataset(plan_dir, images)
    cli = [sys.executable, '-m', 'swift_ext.cli']
    review_cmd = cli + ['review', run_dir, '--out', os.path.join(ctx.work, 'review_out')]
    plan_cmd = cli + ['plan', dataset, '--template', 'qwen2_5_vl_geo', '--json']
    review, plan = [], []
    for r in range(ctx.rounds_for(5)):
        for name in (('review', 'plan') if r % 2 == 0 else ('plan', 'review')):
            if name == 'review':
                review.append(run_measured(review_cmd, os.path.join(ctx.work, 'review.log')))
            else:
                plan.append(run_measured(plan_cmd, os.path.join(ctx.work, 'plan.log')))
    size_mb = os.path.getsize(os.path.join(run_dir, 'image_geometry.jsonl')) / 1e6
    ctx.note(5, f'review: {lines:,} lines ({size_mb:.0f} MB, step x mode x 2,000 sizes, 0.1% '
                'failure lines) plus a logging.jsonl, report with plots; plan: '
                f'{images:,} header-only files (2/3 JPEG, 1/3 PNG, 64-4096 px sides, all distinct '
                f'paths so no header cache hits), 1-3 per row, --workers {os.cpu_count()} (default), '
                'default sweep. Wall time includes interpreter start-up; peak memory is the largest '
                'single process (ru_maxrss from os.wait4 in a small launcher; for plan, the main '
                'process or one worker, whichever peaks higher)')
    return [
        Figure(5, f'review {lines:,} lines: wall', 's', [w for w, _ in review],
               Goal('<', 30)),
        Figure(5, f'review {lines:,} lines: peak RSS', 'MB', [m for _, m in review],
               Goal('<', 500, stat='max')),
        Figure(5, f'plan {images:,} images: throughput', 'images/s',
               [images / w for w, _ in plan], Goal('>=', 5000)),
        Figure(5, f'plan {images:,} images: peak RSS', 'MB', [m for _, m in plan])]


# --- report ---------------------------------------------------------------------------------------------------
RUNNERS = {1: bench_template, 2: bench_geometry, 3: bench_reward, 4: bench_grpo, 5: bench_scale}


def machine_info() -> dict:
    """CPU, memory, load and library versions of this machine, for the published figures."""
    cpu = platform.processor() or platform.machine()
    mem_gib = None
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), cpu)
        with open('/proc/meminfo') as f:
            kib = next(int(l.split()[1]) for l in f if l.startswith('MemTotal'))
            mem_gib = round(kib / 2 ** 20, 1)
    versions = {}
    for lib in ('torch', 'ms-swift', 'transformers', 'qwen-vl-utils', 'pillow', 'numpy', 'scipy'):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {'nproc': os.cpu_count(), 'cpu': cpu, 'memory_gib': mem_gib,
            'python': platform.python_version(), 'platform': platform.platform(),
            'load_average': [round(x, 2) for x in os.getloadavg()], 'versions': versions}


def format_table(figures: Sequence[Figure]) -> str:
    head = f'{"#":<2} {"figure":<48} {"goal":<22} {"min":>10} {"median":>10} {"max":>10}  {"unit":<14} result'
    lines = [head, '-' * len(head)]
    for fig in figures:
        s, ok = fig.summary(), fig.passed()
        result = '' if ok is None else ('pass' if ok else 'FAIL')
        goal = fig.goal.describe() if fig.goal else ''
        lines.append(f'{fig.bench:<2} {fig.name[:48]:<48} {goal[:22]:<22} {_fmt(s["min"]):>10} '
                     f'{_fmt(s["median"]):>10} {_fmt(s["max"]):>10}  {fig.unit:<14} {result}')
    return '\n'.join(lines)


def _only(text: str) -> List[int]:
    try:
        picked = sorted({int(x) for x in text.split(',') if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected benchmark numbers like 1,3,5, got {text!r}') from None
    if not picked or any(b not in BENCHES for b in picked):
        raise argparse.ArgumentTypeError(f'benchmarks are {list(BENCHES)}, got {text!r}')
    return picked


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text!r}')
    return value


def build_parser(prog: str = 'swift-ext bench') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0],
                                epilog=__doc__.split('\n', 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true',
                   help='tiny sizes, few rounds: checks that every benchmark runs (< 2 min)')
    p.add_argument('--only', type=_only, default=list(BENCHES), metavar='1,2,3,4,5',
                   help='which benchmarks to run (default: all)')
    p.add_argument('--rounds', type=_positive, help='rounds (runs, for 4) of every benchmark')
    p.add_argument('--out', metavar='FILE.json', help='also write the figures as JSON')
    p.add_argument('--workdir', help='scratch folder, kept and reused (default: a temporary one)')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    for name in ('swift', 'swift_ext'):
        logging.getLogger(name).setLevel(logging.WARNING)
    work = args.workdir or tempfile.mkdtemp(prefix='swift-ext-bench-')
    os.makedirs(work, exist_ok=True)
    ctx = Context(quick=args.quick, rounds=args.rounds, work=os.path.abspath(work))
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    figures: List[Figure] = []
    seconds = {}
    try:
        for bench in args.only:
            print(f'[bench {bench}: {NAMES[bench]}]', file=sys.stderr, flush=True)
            start = time.perf_counter()
            figures += RUNNERS[bench](ctx)
            seconds[bench] = round(time.perf_counter() - start, 1)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(format_table(figures))
    for bench in args.only:
        for text in ctx.notes.get(bench, []):
            print(f'\n[{bench}] {text}')
    if args.out:
        record = {'command': 'swift-ext bench ' + ' '.join(argv), 'quick': args.quick,
                  'date': started.isoformat(timespec='seconds'), 'machine': machine,
                  'seconds': {NAMES[b]: s for b, s in seconds.items()},
                  'figures': [f.to_dict() for f in figures],
                  'notes': {NAMES[b]: ctx.notes.get(b, []) for b in args.only}}
        with open(args.out, 'w') as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
