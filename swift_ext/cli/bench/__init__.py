"""`swift-ext bench`: does swift-ext slow a training loop? Six measurements, each beside its goal.

1. template  encode() of each `_geo` template vs its ms-swift parent, same samples.
2. geometry  header read + arithmetic vs decoding the image again (`fetch_image`), per image.
3. reward    ``iou_score`` completions per second on one core, vs a regex-and-loop reward.
4. grpo      tiny-model GRPO steps per second with and without the `_geo` template, the
             geometry rewards and the `geo_log` callback (ms-swift's own `rlhf_main`).
5. scale     `swift-ext review` on 1,000,000 geometry lines, `swift-ext plan` on 100,000 images.
6. video     a video's geometry from its header vs `fetch_video` decoding it (short clips, a 60 s
             clip); `swift-ext plan` on 10,000 videos.

Ratios are measured side by side in one process, A and B interleaved with the order
alternating, because absolute times on a shared machine drift. Every figure is reported as
min / median / max over rounds; a goal is judged on the median of wall-clock figures (peak
memory: on the max). CPU-time ratios are printed beside the wall ones: on a loaded machine
they show the work done, without the time other processes took.
``--quick`` runs tiny sizes and few rounds: it checks the benchmark works, not the timings.

One module per benchmark in this package (``template``, ``geometry``, ``reward``, ``grpo``,
``scale``, ``video``), each with ``run(ctx) -> [Figure]``; shared timing helpers and generated inputs in
``measure``; this module holds the figures, the table and the command line.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata

BENCHES = (1, 2, 3, 4, 5, 6)
NAMES = {1: 'template', 2: 'geometry', 3: 'reward', 4: 'grpo', 5: 'scale', 6: 'video'}
# (full, quick) sizes; rounds can be overridden with --rounds.
ROUNDS = {1: (8, 1), 2: (7, 2), 3: (7, 2), 4: (3, 1), 5: (3, 1), 6: (5, 1)}
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
               'MODELSCOPE_OFFLINE': '1', 'USE_HF': '1'}


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
    values: list[float]
    goal: Goal | None = None

    def summary(self) -> dict[str, float]:
        return {'min': min(self.values), 'median': statistics.median(self.values),
                'max': max(self.values)}

    def passed(self) -> bool | None:
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
    rounds: int | None
    work: str
    notes: dict[int, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def size(self, pair: tuple) -> int:
        return pair[1] if self.quick else pair[0]

    def rounds_for(self, bench: int) -> int:
        return self.rounds or self.size(ROUNDS[bench])

    def note(self, bench: int, text: str) -> None:
        self.notes.setdefault(bench, []).append(text)

    def fail(self, bench: int, text: str) -> None:
        """A part of a benchmark that could not be measured: reported, and the command exits 1."""
        self.failures.append(f'[{bench}] {text}')


def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f'{value:,.0f}'
    return f'{value:.4g}'


# --- report ---------------------------------------------------------------------------------------------------
def run_benchmark(bench: int, ctx: Context) -> list[Figure]:
    """Run benchmark ``bench`` (its module is imported only now: each pulls in heavy libraries)."""
    return importlib.import_module(f'{__name__}.{NAMES[bench]}').run(ctx)


def machine_info() -> dict:
    """CPU, memory, load and library versions of this machine, for the published figures."""
    cpu = platform.processor() or platform.machine()
    mem_gib = None
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
        with open('/proc/meminfo') as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith('MemTotal'))
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
    # Names are never cut: "... A/A, wall time" and "... other - parent, wall time" differ in their last words.
    width = max([48] + [len(fig.name) for fig in figures])
    head = f'{"#":<2} {"figure":<{width}} {"goal":<22} {"min":>10} {"median":>10} {"max":>10}  {"unit":<14} result'
    lines = [head, '-' * len(head)]
    for fig in figures:
        s, ok = fig.summary(), fig.passed()
        result = '' if ok is None else ('pass' if ok else 'FAIL')
        goal = fig.goal.describe() if fig.goal else ''
        lines.append(f'{fig.bench:<2} {fig.name:<{width}} {goal[:22]:<22} {_fmt(s["min"]):>10} '
                     f'{_fmt(s["median"]):>10} {_fmt(s["max"]):>10}  {fig.unit:<14} {result}')
    return '\n'.join(lines)


def _only(text: str) -> list[int]:
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
    p.add_argument('--only', type=_only, default=list(BENCHES), metavar='1,2,3,4,5,6',
                   help='which benchmarks to run (default: all)')
    p.add_argument('--rounds', type=_positive, help='rounds (runs, for 4) of every benchmark')
    p.add_argument('--out', metavar='FILE.json', help='also write the figures as JSON')
    p.add_argument('--workdir', help='scratch folder, kept and reused (default: a temporary one)')
    return p


def main(argv: Sequence[str] | None = None) -> int:
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
    figures: list[Figure] = []
    seconds = {}
    try:
        for bench in args.only:
            print(f'[bench {bench}: {NAMES[bench]}]', file=sys.stderr, flush=True)
            start = time.perf_counter()
            figures += run_benchmark(bench, ctx)
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
                  'notes': {NAMES[b]: ctx.notes.get(b, []) for b in args.only},
                  'failures': ctx.failures}
        with open(args.out, 'w') as f:
            json.dump(record, f, indent=1)
    for text in ctx.failures:
        print(f'\nNOT MEASURED {text}', file=sys.stderr)
    return 1 if ctx.failures else 0


if __name__ == '__main__':
    raise SystemExit(main())
