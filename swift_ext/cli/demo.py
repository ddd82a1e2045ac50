"""`swift-ext demo`: a short GRPO grounding run that shows what each image became.

By default it builds a tiny random Qwen2.5-VL locally and a small dataset of generated
images, then runs ms-swift's real GRPO trainer with the `_geo` template, the geometry
rewards and the `geo_log` callback. ``--model`` and ``--dataset`` swap in a real model and
real data; anything after ``--`` goes to ms-swift unchanged.
"""
from __future__ import annotations

import os
import sys
import threading

from ..boxes import is_well_formed
from ..rewards import GeoReward, register_reward
from ..scoring import iou_score
from .plugin_path import plugin_path
from .text import ArgumentParser, echo

_ROWS: list[dict] = []
_LOCK = threading.Lock()
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
    ns = p.parse_args(argv)
    ns.swift_args = extra
    ns.tiny = ns.model is None
    out = os.path.abspath(ns.out)
    if ns.tiny:
        for k, v in OFFLINE_ENV.items():
            os.environ.setdefault(k, v)
    import swift_ext.plugin  # noqa: F401  (templates, rewards, callback)

    from ..settings import template_parent
    from ..testing.tiny import make_tiny_model, run_flags
    register_reward('geo_demo_probe', GeoDemoProbe)
    model, model_type = ns.model, ns.model_type
    if ns.tiny:
        parent = template_parent(ns.template)
        model = make_tiny_model(parent, os.path.join(out, f'tiny-{parent}'))
        model_type = run_flags(parent)['model_type']
    dataset = ns.dataset
    if dataset is None:
        from ..testing.images import DEMO_ROW_MAX_PIXELS, make_dataset
        dataset = make_dataset(os.path.join(out, 'data'), row_max_pixels=DEMO_ROW_MAX_PIXELS)
    from swift import rlhf_main
    rlhf_main(build_args(ns, model, model_type, dataset, os.path.join(out, 'output')))
    echo('\nWhat the reward functions saw, per image (random tiny model: rewards are 0, '
         'the geometry is the point):\n')
    echo(format_table(_ROWS))
    echo(f'\nRun folder: {os.path.join(out, "output")} '
         f'(review it with: swift-ext review {os.path.join(ns.out, "output")})')
    return 0
