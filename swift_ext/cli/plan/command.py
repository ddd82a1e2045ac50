"""`swift-ext plan DATASET --template NAME`: what a template will do to a dataset's images."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..checkpoint import CheckpointError, tool_settings
from ..dataset import cut
from ..text import ArgumentParser, echo
from .report import format_text, summary
from .run import DEFAULT_SWEEP, DEFAULT_TILE_SWEEP, PlanAborted, plan_dataset
from .work import tile_knob

EXIT_OK, EXIT_USAGE, EXIT_INCOMPLETE = 0, 2, 3

HELP_EPILOG = """\
Pixel limits, as ms-swift applies them:
  --max_pixels N   ms-swift's own `--max_pixels` flag: every image above N pixels is first
                   shrunk to about N pixels (keeping its aspect ratio), for every model,
                   before the model's own resize.
  MAX_PIXELS=N     (environment) Qwen only: qwen-vl-utils' smart_resize limit, turned
                   into N // 28**2 tokens (N // 32**2 for Qwen3-VL), as ms-swift does.
  MIN_PIXELS=N     (environment) Qwen only, the lower limit, likewise. `--min_pixels N`
                   here means the same as MIN_PIXELS=N and wins over the variable.
  IMAGE_MAX_TOKEN_NUM / IMAGE_MIN_TOKEN_NUM (environment) Qwen: the limits in tokens;
                   they win over MAX_PIXELS / MIN_PIXELS, as in ms-swift.
  MAX_NUM=N        (environment) InternVL (ms-swift tiling): at most N tiles; `--max_num`
                   sets it too (and the processor's max_patches for internvl_hf).
  INPUT_SIZE=N     (environment) InternVL (ms-swift tiling): tile side in pixels.
A row's chat_template_kwargs {"max_pixels": N, "min_pixels": M} applies to that row only.
The sweep recomputes the plan with each value as MAX_PIXELS (Qwen) or as --max_pixels;
tiling families sweep their tile limit instead (--sweep_max_num).
--model DIR reads the settings from a local checkpoint (its processor: pinpoints, slice counts,
pixel limits) as the live template does; without it, the built-in defaults of the template's
reference checkpoint are used (the plan's first lines say which).
Some templates' collators cannot batch rows of different shapes (LLaVA-NeXT 1-image and 2-image
rows, Mistral 3 / Pixtral sizes, Phi-4 crop counts, Llama 3.2 Vision image counts): plan names
those rows unless --batch_size 1 says no batch holds two rows.
Row numbers are 1-based line numbers (jsonl) or list positions (json).
Relative image paths resolve as ms-swift resolves them: against the working directory,
then ROOT_IMAGE_DIR; run plan from where training runs. A path that exists only next to
the dataset file, or names another file there, is reported.
Exit status: 0 plan printed (failing rows are listed, not an error), 2 bad arguments or
unreadable dataset, 3 plan incomplete (a worker process died)."""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected integers separated by commas, got {cut(text, 60)!r}') from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f'expected positive integers, got {cut(text, 60)!r}')
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, got {cut(text, 60)!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {value}')
    return value


def build_parser(prog: str = 'swift-ext plan') -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.split('\n')[0],
                                epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', metavar='DATASET', help='a .jsonl, .json or .parquet dataset in ms-swift format')
    p.add_argument('--template', required=True, help='a `_geo` template, e.g. qwen2_5_vl_geo')
    p.add_argument('--max_pixels', type=_positive, help="ms-swift's --max_pixels (a pre-rescale)")
    p.add_argument('--min_pixels', type=_positive, help='as MIN_PIXELS (Qwen smart_resize lower limit)')
    p.add_argument('--max_num', type=_positive, help='InternVL: most tiles per image (as MAX_NUM)')
    p.add_argument('--sweep', type=_int_list, default=None,
                   help=f'pixel budgets to compare, comma-separated (default: {",".join(map(str, DEFAULT_SWEEP))}; '
                        'for tiling families, none)')
    p.add_argument('--sweep_max_num', type=_int_list, default=None,
                   help=f'tile limits to compare for tiling families (default: '
                        f'{",".join(map(str, DEFAULT_TILE_SWEEP))})')
    p.add_argument('--workers', type=_positive, default=os.cpu_count(), help='processes (default: all cores)')
    p.add_argument('--verify', action='store_true',
                   help='also read each file past its header (slower; finds cut-off files)')
    p.add_argument('--model', metavar='DIR', help='a local checkpoint (or its processor config): read its '
                   'settings as the live template does (default: built-in defaults)')
    p.add_argument('--batch_size', type=_positive, default=None,
                   help='per_device_train_batch_size of the training run: 1 means no batch mixes rows (default: '
                        'not given; rows a batch cannot mix are named)')
    p.add_argument('--json', action='store_true', help="print machine-readable JSON, with each image's geometry")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings, source = tool_settings(args.template, args.model, swift_max_pixels=args.max_pixels,
                                         min_pixels=args.min_pixels, max_num=args.max_num)
    except (CheckpointError, ValueError) as exc:
        echo(f'swift-ext plan: {exc}', err=True)
        return EXIT_USAGE
    if args.min_pixels is not None and not hasattr(settings, 'min_pixels'):
        echo(f'swift-ext plan: --min_pixels does not apply to {settings.template}; ignored.', err=True)
    if args.max_num is not None and not hasattr(settings, 'max_num'):
        echo(f'swift-ext plan: --max_num does not apply to {settings.template}; ignored.', err=True)
    if not os.path.isfile(args.dataset):
        echo(f'swift-ext plan: DATASET must be a regular file, got {args.dataset!r}.', err=True)
        return EXIT_USAGE
    tiling = tile_knob(settings) is not None
    sweep = args.sweep if args.sweep is not None else ([] if tiling else list(DEFAULT_SWEEP))
    tile_sweep = args.sweep_max_num if args.sweep_max_num is not None else (
        list(DEFAULT_TILE_SWEEP) if tiling and args.sweep is None else [])
    from tqdm import tqdm
    try:
        with tqdm(unit='rows', desc='plan', file=sys.stderr, disable=None, leave=False) as progress:
            stats = plan_dataset(args.dataset, settings, sweep=sweep, tile_sweep=tile_sweep,
                                 workers=args.workers, verify=args.verify, progress=progress, per_image=args.json)
    except PlanAborted as exc:
        echo(f'swift-ext plan: {exc}', err=True)
        return EXIT_INCOMPLETE
    except (OSError, ValueError, RecursionError) as exc:
        echo(f'swift-ext plan: {args.dataset}: {cut(str(exc), 500)}', err=True)
        return EXIT_USAGE
    s = summary(stats, settings, settings_source=source, batch_size=args.batch_size)
    echo(json.dumps(s, indent=1) if args.json else format_text(s))
    return EXIT_OK
