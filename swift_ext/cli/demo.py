"""`swift-ext demo`: a short GRPO grounding run that shows what each image became.

By default it builds a tiny random Qwen2.5-VL locally and a small dataset of generated
images, then runs ms-swift's real GRPO trainer with the `_geo` template, the geometry
rewards and the `geo_log` callback. ``--model`` and ``--dataset`` swap in a real model and
real data; anything after ``--`` goes to ms-swift unchanged.

ms-swift's own output (its argument dump, the model, the trainer's log) goes to ``OUT/swift.log``; the
terminal gets a few progress lines and the table (``--verbose`` shows everything instead).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback

from ..boxes import is_well_formed
from ..rewards import GeoReward, register_reward
from ..scoring import iou_score
from .plugin_path import plugin_path
from .text import ArgumentParser, echo

_ROWS: list[dict] = []
_LOCK = threading.Lock()
_TERMINAL: list = []  # where progress lines go while ms-swift's output goes to the log (set by ``_output_to``)
LOG_NAME = 'swift.log'


def progress(text: str) -> None:
    """One short line on the terminal, even while standard output and error go to the log."""
    stream = _TERMINAL[-1] if _TERMINAL else sys.stdout
    stream.write(f'[demo] {text}\n')
    stream.flush()


@contextlib.contextmanager
def _output_to(path: str | None):
    """Send file descriptors 1 and 2 (print, logging, tqdm, C libraries) to ``path``; progress lines still reach
    the terminal. ``None``: leave them alone (``--verbose``)."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), 'w', buffering=1)
    _TERMINAL.append(terminal)
    try:
        with open(path, 'ab') as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        _TERMINAL.remove(terminal)
        terminal.close()
        os.close(saved[0])
        os.close(saved[1])
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
               'MODELSCOPE_OFFLINE': '1', 'USE_HF': '1'}


class GeoDemoProbe(GeoReward):
    """Records what the rewards saw for each completion, for the demo's table; scores None."""

    def score(self, completion, *, image_geometry, settings, images=None, solution=None, **row):
        if not image_geometry or settings is None:
            return None
        geo = image_geometry[0]
        src = images[0] if images else None
        name = src.get('path') if isinstance(src, dict) else src
        with _LOCK:
            if not _ROWS:
                progress('the rewards are scoring the first completions')
            _ROWS.append({'image': os.path.basename(str(name)), 'geometry': geo,
                          'coords': settings.coords, 'solution': solution,
                          'iou': iou_score(completion, solution, geo, settings.coords),
                          'format': float(is_well_formed(completion, settings.box_styles))})
        return None


def model_frame_box(box, geo, coords: str) -> list | None:
    """The ground-truth box as the model should write it (its own frame and convention)."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    return [round(v, 3) if coords == 'norm1' else round(v) for v in geo.to_model_frame(box, coords)]


def format_table(rows: list[dict]) -> str:
    head = (f'{"image":<26} {"original":>10} {"resized":>10} {"tokens":>6} {"tiles":>5} '
            f'{"gt box (original px)":>22} {"gt box (model frame)":>22} {"coords":>8} '
            f'{"GeoIoU":>6} {"GeoFormat":>9}')
    lines = [head, '-' * len(head)]
    seen = set()
    for r in rows:
        g = r['geometry']
        key = (r['image'], r['iou'], r['format'])
        if key in seen:
            continue
        seen.add(key)
        iou = '-' if r['iou'] is None else f'{r["iou"]:.2f}'
        tiles = f'{g.tile_cols}x{g.tile_rows}+{int(g.thumbnail)}' if g.tile_cols else str(g.num_tiles)
        lines.append(
            f'{r["image"][:26]:<26} {f"{g.original_width}x{g.original_height}":>10} '
            f'{f"{g.resized_width}x{g.resized_height}":>10} {g.num_tokens:>6} {tiles:>5} '
            f'{str(r["solution"]):>22} {str(model_frame_box(r["solution"], g, r["coords"])):>22} '
            f'{r["coords"]:>8} {iou:>6} {r["format"]:>9.2f}')
    return '\n'.join(lines)


def build_args(ns, model: str, model_type: str | None, dataset: str, out: str) -> list[str]:
    plugin = plugin_path()
    args = ['--rlhf_type', 'grpo', '--model', model, '--template', ns.template,
            '--reward_funcs', 'geo_iou', 'geo_format', 'geo_demo_probe',
            '--callbacks', 'geo_log', '--dataset', dataset,
            '--num_generations', '2', '--per_device_train_batch_size', str(ns.batch_size),
            '--max_completion_length', str(ns.max_completion_length),
            '--max_steps', str(ns.steps), '--tuner_type', 'lora', '--report_to', 'none',
            '--log_completions', 'true', '--output_dir', out, '--logging_steps', '1',
            '--save_strategy', 'no', '--dataloader_num_workers', '0']
    if os.path.exists(plugin):
        args += ['--external_plugins', plugin]
    if model_type:
        args += ['--model_type', model_type]
    if ns.tiny:
        args += ['--torch_dtype', 'float32', '--check_model', 'false', '--seed', '42']
    return args + ns.swift_args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if '--' in argv:
        i = argv.index('--')
        argv, extra = argv[:i], argv[i + 1:]
    p = ArgumentParser(prog='swift-ext demo', description=__doc__)
    p.add_argument('--model', help='model id or path (default: a tiny local Qwen2.5-VL)')
    p.add_argument('--model_type', help='ms-swift model type, when it cannot tell')
    p.add_argument('--dataset', help='GRPO dataset with images and solution (default: generated)')
    p.add_argument('--template', default='qwen2_5_vl_geo')
    p.add_argument('--out', default='demo_run', help='working folder (default: ./demo_run)')
    p.add_argument('--steps', type=int, default=1)
    p.add_argument('--batch_size', type=int, default=12, help='multiple of 2 (2 generations)')
    p.add_argument('--max_completion_length', type=int, default=32)
    p.add_argument('--verbose', action='store_true',
                   help=f"show ms-swift's output on the terminal (default: in OUT/{LOG_NAME})")
    ns = p.parse_args(argv)
    ns.swift_args = extra
    ns.tiny = ns.model is None
    out = os.path.abspath(ns.out)
    if ns.tiny:
        for k, v in OFFLINE_ENV.items():
            os.environ.setdefault(k, v)
    os.makedirs(out, exist_ok=True)
    log = None if ns.verbose else os.path.join(out, LOG_NAME)
    started = time.monotonic()
    if log is not None:
        progress(f"ms-swift's output goes to {os.path.join(ns.out, LOG_NAME)}")
    try:
        with _output_to(log):
            _run(ns, out)
    except (Exception, SystemExit) as exc:  # whatever ms-swift raises (its argparse exits): named, traceback logged
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        if log is not None:
            with open(log, 'a', encoding='utf-8') as f:
                traceback.print_exc(file=f)
        where = f"; the traceback and ms-swift's output are in {log}" if log else ''
        echo(f'swift-ext demo: the run failed ({type(exc).__name__}: {str(exc)[:300]}){where}', err=True)
        return 1
    progress(f'done in {time.monotonic() - started:.0f} s')
    echo('\nWhat the reward functions saw, per image (random tiny model: rewards are 0, '
         'the geometry is the point):\n')
    echo(format_table(_ROWS))
    echo(f'\nRun folder: {os.path.join(out, "output")} '
         f'(review it with: swift-ext review {os.path.join(ns.out, "output")})')
    if log is not None:
        echo(f"ms-swift's full output: {log}")
    return 0


def _run(ns, out: str) -> None:
    """Build the tiny model and the dataset where needed, then run ms-swift's GRPO trainer."""
    import swift_ext.plugin  # noqa: F401  (templates, rewards, callback)

    from ..settings import template_parent
    from ..testing.tiny import make_tiny_model, run_flags
    register_reward('geo_demo_probe', GeoDemoProbe)
    model, model_type = ns.model, ns.model_type
    if ns.tiny:
        parent = template_parent(ns.template)
        progress(f'building a tiny random {parent} checkpoint in {os.path.join(ns.out, f"tiny-{parent}")}')
        model = make_tiny_model(parent, os.path.join(out, f'tiny-{parent}'))
        model_type = run_flags(parent)['model_type']
    dataset = ns.dataset
    if dataset is None:
        from ..testing.images import DEMO_ROW_MAX_PIXELS, make_dataset
        progress(f'writing a small grounding dataset of generated images to {os.path.join(ns.out, "data")}')
        dataset = make_dataset(os.path.join(out, 'data'), row_max_pixels=DEMO_ROW_MAX_PIXELS)
    progress(f"running ms-swift's GRPO trainer ({ns.steps} step{'s' if ns.steps != 1 else ''}, template "
             f'{ns.template})')
    from swift import rlhf_main
    rlhf_main(build_args(ns, model, model_type, dataset, os.path.join(out, 'output')))
