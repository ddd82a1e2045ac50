"""Benchmark 1: encode() of each `_geo` template against its ms-swift parent, same samples (images; and videos
for the templates with video geometry)."""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import logging
import os
import random
import statistics
import subprocess
import sys
from collections.abc import Sequence

from . import Context, Figure, Goal
from .measure import env_vars, make_images, steady_heap, timed


def _encode_into(outputs: list, template, sample) -> None:
    outputs.append((template, template.encode(sample)))


def _collate(template, rows: list) -> None:
    """The template's own data_collator over one batch's encodes, in groups its parent can batch.

    ms-swift's collators refuse some mixes (LLaVA-NeXT a 2-image row beside a 1-image row, Mistral 3
    different resized sizes, Llama 3.2 Vision different image counts): rows of such a batch are
    collated one at a time, the same way for both templates.
    """
    try:
        template.data_collator(rows)
    except Exception:  # noqa: BLE001  (the parent's refusal, not ours: both sides fall back alike)
        for row in rows:
            template.data_collator([row])


# Samples per family: every family with a tiny checkpoint is measured (12 families at the time
# of writing), so each gets 40 samples x 8 rounds, about 40 seconds of encodes.
TEMPLATE_SAMPLES = (40, 6)
GOAL = 1.01
# Samples per collate: `_geo` templates read and record a batch's encodes when it is collated.
BATCH = 8
# Samples of the discarded warm-up measurement each round's process starts with.
WARM_UP_SAMPLES = 8
# Which parent stands for its family when the family has several (otherwise the first, sorted).
PREFERRED_PARENTS = ('qwen2_5_vl', 'internvl_hf')
# The family also measured with the log off and against itself (A/A).
AA_PARENT = 'qwen2_5_vl'
# Image sizes (width, height), below 1.3 MP: about the size of a COCO image and smaller.
TEMPLATE_SIZES = ((64, 48), (160, 120), (224, 224), (320, 240), (300, 500), (448, 448),
                  (500, 375), (640, 480), (480, 640), (800, 600), (896, 448), (1000, 200),
                  (1024, 768), (1280, 720))
# Video encodes: the parents measured on samples of one generated video each (frames, fps, width, height),
# 2-3 seconds, with the row settings users set (a clip window, a sample rate, a frame count).
VIDEO_PARENTS = ('qwen2_5_vl', 'qwen3_vl')
VIDEO_SAMPLES = (24, 4)
VIDEO_CLIPS = ((30, 10, 64, 48), (60, 30, 160, 120), (75, 25, 320, 240), (48, 24, 640, 360))
VIDEO_ROWS = (None, {'video_start': 0.5, 'video_end': 2.0}, {'fps': 4}, {'nframes': 4})


# --- 1. template overhead ------------------------------------------------------------------------------------
def template_samples(paths: Sequence[str], n: int, seed: int = 0) -> list[dict]:
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


def video_samples(paths: Sequence[str], n: int, seed: int = 0) -> list[dict]:
    """``n`` temporal-grounding samples of one video each, drawn from ``paths``, with ``VIDEO_ROWS`` settings."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row = {'messages': [{'role': 'user', 'content': '<video>When does it happen?'},
                            {'role': 'assistant', 'content': '<answer>0.5 - 1.5</answer>'}],
               'videos': [rng.choice(paths)]}
        row_kwargs = rng.choice(VIDEO_ROWS)
        if row_kwargs:
            row['chat_template_kwargs'] = dict(row_kwargs)
        out.append(row)
    return out


def family_parents() -> list[str]:
    """One parent template per family that has a tiny checkpoint recipe."""
    from ...families import family_of
    from ...testing.tiny import parents
    by_family = {}
    for parent in parents():
        by_family.setdefault(family_of(parent)[0].name, []).append(parent)
    return sorted(next((p for p in PREFERRED_PARENTS if p in group), group[0]) for group in by_family.values())


def _one_round(ctx: Context, index: int = 0) -> tuple[list[Figure], bool]:
    """Round ``index`` of every family and video parent, in this process: the figures (one value each), and
    whether the heap was kept steady.

    A new process is not yet in its steady state (its heap grows, its caches fill): a family measured first
    read 0.99 where it reads 1.006 later. So a warm-up measurement, discarded, comes first, and the families'
    order is shuffled by the round's index, so that no family is always measured next to the same others.
    """
    import torch

    import swift_ext.plugin  # noqa: F401  (registers the _geo templates)

    from ...recorder import recorder
    from ...runlog import ENV_DIR

    paths = make_images(os.path.join(ctx.work, 'template_images'), TEMPLATE_SIZES)
    samples = template_samples(paths, ctx.size(TEMPLATE_SAMPLES))
    figures = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker; keeps other load out of the timing
    try:
        with env_vars(**{ENV_DIR: os.path.join(ctx.work, 'template_runlog')}), steady_heap() as steady:
            parents = family_parents()
            random.Random(index).shuffle(parents)
            with contextlib.suppress(Exception):  # a family that fails is reported where it is measured
                _measure_parent(ctx, parents[-1], samples[:WARM_UP_SAMPLES])  # discarded: the process warms up
            measured = {}
            for parent in parents:
                try:
                    measured[parent] = _measure_parent(ctx, parent, samples)
                except Exception as exc:  # one family's failure must not lose the others' figures
                    ctx.fail(1, f'{parent}: not measured: {type(exc).__name__}: {exc}')
            figures += [fig for parent in sorted(measured) for fig in measured[parent]]
            videos = _make_videos(os.path.join(ctx.work, 'template_videos'))
            clips = video_samples(videos, ctx.size(VIDEO_SAMPLES))
            for parent in VIDEO_PARENTS:
                try:
                    figures += _measure_parent(ctx, parent, clips, kind=' (video)')
                except Exception as exc:
                    ctx.fail(1, f'{parent} (video): not measured: {type(exc).__name__}: {exc}')
            recorder().flush()
    finally:
        torch.set_num_threads(threads)
    return figures, steady


def run(ctx: Context) -> list[Figure]:
    """Every round in a new Python process (``python -m swift_ext.cli.bench.template``), one after another.

    Where a process's objects lie moves a family's ratio by up to 1.2% for the whole process (its rounds
    move together; the same `_geo` class with every override taken out read 0.995 in one process, 1.001 in
    the next), more than the goal's 1%: a median over rounds of one process is one draw of that. As pyperf
    runs its worker processes, each round here is a fresh process, so the median is over independent draws.
    """
    merged: dict[str, Figure] = {}
    steady = None
    for index in range(ctx.rounds_for(1)):
        result = _round_in_new_process(ctx, index)
        if result is None:
            continue
        steady = result['steady'] if steady is None else steady and result['steady']
        for text in result['failures']:
            if text not in ctx.failures:
                ctx.failures.append(text)
        for fig in result['figures']:
            found = merged.get(fig['name'])
            if found is not None:
                found.values += fig['values']
                continue
            goal = fig['goal'] and Goal(fig['goal']['op'], fig['goal']['threshold'], fig['goal']['stat'])
            merged[fig['name']] = Figure(1, fig['name'], fig['unit'], list(fig['values']), goal)
    samples = ctx.size(TEMPLATE_SAMPLES)
    ctx.note(1, f'{samples} samples of 1-3 images ({len(TEMPLATE_SIZES)} sizes from '
                f'64x48 to 1280x720, JPEG and PNG) for one parent template per family '
                f'({", ".join(family_parents())}), mode train, torch 1 thread. Each sample goes through '
                "both templates back to back, twice, once in each order, with new template objects every "
                "round; a round's ratio is the median over samples of the _geo / parent time of the same "
                "sample, each with its share of its template's own data_collator over the batch of 8 (the "
                "parent's collate; for _geo also the lines read and written there, as in a dataloader worker; "
                "a batch the parent cannot collate is collated row by row on both sides). Geometry log on; "
                f'{AA_PARENT} also with the log off, and '
                'against a second instance of its own parent (A/A: what the method reads when nothing differs). '
                f'Each round in a new Python process ({ctx.rounds_for(1)} rounds) that first warms up on '
                f'{WARM_UP_SAMPLES} samples of one family (discarded) and then takes the families in an order '
                "shuffled by the round's number; a round's ratio is the median over its pairs, a figure the "
                'median over rounds. '
                f'Video: {ctx.size(VIDEO_SAMPLES)} samples of one generated video each ({len(VIDEO_CLIPS)} videos of '
                '2-3 s, 64x48 to 640x360, H.264), whole, clipped, at fps 4 or 4 frames, for '
                f'{", ".join(VIDEO_PARENTS)}, the same method (the reader qwen-vl-utils picks decodes each encode). '
                + ('Large blocks kept on the heap (glibc mallopt) while measuring: the same collate no longer varies '
                   '2x with page faults, and the parents get faster, so ratios read higher, not lower.' if steady else
                   'Allocator left as it is (not glibc): large collates vary with page faults.' if steady is False
                   else ''))
    return list(merged.values())


ROUND_TIMEOUT = 3600  # seconds for one round's process (about 3 minutes on 2 cores)
ROUND_MODULE = 'swift_ext.cli.bench.template'  # this module, run as a round's process


def _round_in_new_process(ctx: Context, index: int) -> dict | None:
    """Run round ``index`` in a new process: its figures, failures and heap flag, or None (a failure noted)."""
    out = os.path.join(ctx.work, f'template_round{index}.json')
    log = os.path.join(ctx.work, f'template_round{index}.log')
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out)
    cmd = [sys.executable, '-m', ROUND_MODULE, '--work', ctx.work, '--out', out, '--round', str(index)]
    cmd += ['--quick'] if ctx.quick else []
    try:
        with open(log, 'w') as f:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=ROUND_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        ctx.fail(1, f'round {index + 1}: not measured: its process ran past {ROUND_TIMEOUT} s (log: {log}).')
        return None
    try:
        with open(out) as f:
            result = json.load(f)
    except (OSError, ValueError):
        result = None
    if code != 0 or not isinstance(result, dict):
        with open(log, errors='replace') as f:
            tail = f.read()[-600:].strip()
        ctx.fail(1, f'round {index + 1}: not measured: its process exited with {code} (log: {log}): ...{tail}')
        return None
    return result


def round_main(argv: Sequence[str] | None = None) -> int:
    """One round in this process (what ``run`` starts): writes ``--out`` as JSON."""
    parser = argparse.ArgumentParser(prog=f'python -m {ROUND_MODULE}', description=round_main.__doc__)
    parser.add_argument('--work', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--round', type=int, default=0)
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args(argv)
    for name in ('swift', 'swift_ext'):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = Context(quick=args.quick, rounds=1, work=args.work)
    figures, steady = _one_round(ctx, args.round)
    with open(args.out, 'w') as f:
        json.dump({'figures': [fig.to_dict() for fig in figures], 'failures': ctx.failures, 'steady': steady}, f)
    return 0


def _make_videos(folder: str) -> list[str]:
    from ...testing.videos import make_video
    os.makedirs(folder, exist_ok=True)
    paths = []
    for frames, fps, width, height in VIDEO_CLIPS:
        path = os.path.join(folder, f'{frames}f_{fps}fps_{width}x{height}.mp4')
        if not os.path.exists(path):
            make_video(path, num_frames=frames, fps=fps, width=width, height=height)
        paths.append(path)
    return paths


def _measure_parent(ctx: Context, parent_name: str, samples: Sequence[dict], kind: str = '') -> list[Figure]:
    from swift.model import get_processor
    from swift.template import get_template

    from ...recorder import recorder
    from ...runlog import ENV_DIR
    from ...testing.tiny import make_tiny_model, run_flags

    model = make_tiny_model(parent_name, os.path.join(ctx.work, f'tiny-{parent_name}'))
    model_type = run_flags(parent_name)['model_type']
    proc = get_processor(model, model_type=model_type)
    dummy = _dummy_model(model, model_type)
    pairs = [(kind, parent_name + '_geo')]
    if parent_name == AA_PARENT and not kind:
        pairs += [(' (log off)', parent_name + '_geo'), (' (A/A: parent / parent)', parent_name)]
    figures = []
    for label, other_name in pairs:
        wall, cpu, parent_ms, extra_us = [], [], [], []
        with env_vars(**({ENV_DIR: None} if 'log off' in label else {})):
            for _ in range(ctx.rounds_for(1)):
                # New template objects every round: two identical templates differ by up to 1-2% in
                # a round (where their objects happen to lie in memory); new ones redraw it.
                parent, other = (get_template(proc, template_type=name) for name in (parent_name, other_name))
                for tpl in (parent, other):
                    tpl.set_mode('train')
                    tpl.dummy_model = dummy
                    for sample in samples[:3]:
                        tpl.encode(sample)
                recorder().flush()  # the warm-up's lines: not part of the first batch
                times = _encode_round(parent, other, samples)
                wall.append(statistics.median(b[0] / a[0] for a, b in times))
                cpu.append(statistics.median(b[1] / a[1] for a, b in times))
                extra_us.append(statistics.median(b[0] - a[0] for a, b in times) * 1e6)
                parent_ms.append(sum(a[0] for a, _ in times) / len(times) * 1e3)
        if label == kind:
            figures.append(Figure(1, f'{parent_name}{kind}: parent encode', 'ms/sample', parent_ms))
        name = 'A/A' if 'A/A' in label else '_geo / parent'
        goal = None if 'A/A' in label else Goal('<=', GOAL)
        # The same pairs as a difference: what recording costs does not grow with the parent's own work,
        # so the cheapest encodes read the highest ratio; microseconds compare families as they are.
        figures += [Figure(1, f'{parent_name}{label}: {name}, wall time', 'ratio', wall, goal),
                    Figure(1, f'{parent_name}{label}: {name}, CPU time', 'ratio', cpu),
                    Figure(1, f'{parent_name}{label}: {"other - parent" if "A/A" in label else "_geo - parent"}, '
                              'wall time', 'us/sample', extra_us)]
    return figures


def _dummy_model(model: str, model_type: str):
    """The meta-device model a collate outside the trainer asks for (Qwen's rope index), loaded with the
    model type: ms-swift's own fallback loads it without one, which Qwen3-VL's folder leaves ambiguous."""
    import torch
    from swift.model import get_model_processor
    try:
        with torch.device('meta'):
            return get_model_processor(model, model_type=model_type, return_dummy_model=True)[0]
    except Exception:  # noqa: BLE001  (Florence-2's has no causal-LM class; its collate needs no model)
        return None


def _encode_round(parent, other, samples: Sequence[dict],
                  batch: int = BATCH) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Per encode pair, ((wall, cpu) of the parent, (wall, cpu) of ``other``), each sample twice.

    Each sample goes through both templates back to back, twice, in both orders: the second
    encode of a sample runs 3-7% faster than the first (allocator and caches warm), more than
    the effect measured. Ratios are taken per pair because single encodes have rare outliers of
    5-10x the median (a full garbage collection, page faults) that a ratio of summed times would
    charge to whichever template drew them: an A/A run of summed times reads 0.93-1.02.

    Encodes are kept, as a DataLoader keeps a batch's, until after every ``batch`` samples each template
    collates its own encodes with its own data_collator: the parent's collate, and for `_geo` the
    recorder's collate trigger on top (reading the batch's encodes, fingerprinting its rows, writing
    its lines and event), as in a dataloader worker. Each side's collate time is shared out over its
    batch's encodes, so each pair's ratio holds all the work recording costs, against all the work the
    parent does for a sample (some families process their images in the collate).
    """
    from ...recorder import recorder

    times = []
    recorder().flush()  # work earlier encodes left waiting is not this round's: its triggers would fire in a pair
    gc.collect()
    for flip in (0, 1):
        for start in range(0, len(samples), batch):
            pairs, outputs = [], []
            for i, sample in enumerate(samples[start:start + batch], start):
                first, second = (parent, other) if (i + flip) % 2 == 0 else (other, parent)
                t_first = timed(functools.partial(_encode_into, outputs, first, sample))
                t_second = timed(functools.partial(_encode_into, outputs, second, sample))
                pairs.append((t_first, t_second) if first is parent else (t_second, t_first))
            # Each template's own collate of its batch: the parent's work there (GOT-OCR 2.0 and
            # Florence-2 process their images in it) and, for `_geo`, the recorder's collate trigger.
            collate = {}
            for tpl in (parent, other) if flip == 0 else (other, parent):
                rows = [encoded for t, encoded in outputs if t is tpl]
                collate[id(tpl)] = timed(functools.partial(_collate, tpl, rows))
            (pw, pc), (ow, oc) = collate[id(parent)], collate[id(other)]
            n = len(pairs)
            times += [((a[0] + pw / n, a[1] + pc / n), (b[0] + ow / n, b[1] + oc / n)) for a, b in pairs]
            outputs.clear()  # the batch is collated and dropped, outside the timing, for both templates alike
    return times


if __name__ == '__main__':
    raise SystemExit(round_main())
