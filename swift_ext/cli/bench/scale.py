"""Benchmark 5: `swift-ext review` on 1,000,000 geometry lines, `swift-ext plan` on 100,000 images."""
from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
from collections.abc import Sequence

from . import Context, Figure, Goal
from .measure import png_header

REVIEW_LINES = (1_000_000, 20_000)
PLAN_IMAGES = (100_000, 2_000)


# --- 5. review and plan at scale ---------------------------------------------------------------------------------
def write_geometry_log(run_dir: str, lines: int, seed: int = 0) -> None:
    """A run folder with ``lines`` image_geometry records (the run-log schema) and a logging.jsonl."""
    from ...settings import default_settings
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


def _jpeg_with_size(template: bytes, sof: int, width: int, height: int) -> bytes:
    return template[:sof + 5] + struct.pack('>HH', height, width) + template[sof + 9:]


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


def run_measured(cmd: Sequence[str], log: str) -> tuple[float, float]:
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


def run(ctx: Context) -> list[Figure]:
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
