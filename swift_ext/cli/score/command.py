"""`swift-ext score RESULT.jsonl --template T`: grounding metrics of `swift infer` results, in original pixels."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ...families import family_of
from ...families.base import UNTRAINED_COORDS
from ...geometry import COORDS
from ...settings import template_parent
from ..bounded import FileStatus, refuse_reason, short
from ..cards import draw_gallery, gallery_mb
from ..checkpoint import CheckpointError, tool_settings
from ..embed import ImagePolicy
from ..output import STDOUT, OutputError, prepare_out_dir, replacing, write_named
from ..text import ArgumentParser, echo
from .aggregate import MAX_LINE, gallery_items, joined_rows, score_file
from .recorded import inference_check
from .report import format_text, report_html
from .truth import DatasetTruth, JoinError, first_row_has_key
from .video import VideoScores, add_video_arguments, mode_of, video_strips

COORDS_ENV = 'SWIFT_EXT_COORDS'
MAX_JSON_ROWS = 100_000  # rows listed in --json's per_row (--rows writes every row)


def build_parser(prog: str = 'swift-ext score') -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('result', metavar='RESULT.jsonl', help='the file `swift infer --result_path` wrote')
    p.add_argument('--template', required=True, help='the _geo template (or its parent) the model ran with')
    p.add_argument('--dataset', metavar='DATA.jsonl',
                   help='the --val_dataset (.jsonl, .json, .parquet): its `solution` column, joined by `id` where '
                        'both files carry one, else row by row (swift infer drops it)')
    p.add_argument('--max_pixels', type=int, help="ms-swift's --max_pixels, if the inference used it")
    p.add_argument('--model', metavar='DIR', help='the checkpoint the inference ran (a local folder or its processor '
                   'config): its settings as the live template reads them (default: built-in defaults)')
    p.add_argument('--coords', choices=COORDS, help=f"the model's box convention (default: ${COORDS_ENV}, "
                   "else the template's)")
    p.add_argument('--json', action='store_true',
                   help=f"print the numbers as JSON, with per_row: each row's IoU (the first {MAX_JSON_ROWS:,} rows)")
    p.add_argument('--rows', metavar='FILE',
                   help='write one JSON line per row: its IoU, matched score, image and geometry, or why it was '
                        'not scored (every row, streamed)')
    p.add_argument('--html', metavar='PATH',
                   help="write a page with the metrics and a gallery of predictions ('-': standard output)")
    p.add_argument('--gallery', type=int, default=12, metavar='N', help='predictions drawn in --html (default 12)')
    p.add_argument('--gallery-max-mb', type=gallery_mb, default=4.0, metavar='MB', help='bound on embedded images')
    p.add_argument('--images-under', action='append', default=[], metavar='DIR',
                   help="embed image files under DIR in --html too (repeatable; by default only those under the "
                        "--dataset's folder)")
    add_video_arguments(p)
    return p


def _settings(args):
    """``(settings, where they come from)``: ``--model``'s checkpoint, else the built-in defaults."""
    template = args.template if args.template.endswith('_geo') else args.template + '_geo'
    template_parent(template)  # refuses a name no family serves, with the list
    return tool_settings(template, args.model, swift_max_pixels=args.max_pixels)


def _trained_coords(settings) -> str | None:
    """The template's convention where its checkpoints were trained to write boxes, else None (as geo_iou)."""
    if settings is None:
        return None
    return settings.coords if family_of(settings.template)[1].boxes_trained else None


def _usage_error(args) -> str | None:
    """Why the arguments cannot be used together, or None."""
    for what, path in (('RESULT.jsonl', args.result), ('--dataset', args.dataset)):
        reason = refuse_reason(path) if path is not None else None
        if reason:
            return f'{what} {path}: {reason}.'
    if args.gallery < 0:
        return f'--gallery must be >= 0, got {args.gallery}.'
    if args.html == STDOUT and args.json:
        return '--html - and --json both write to standard output; choose one.'
    if args.rows == STDOUT:
        return '--rows needs a file name (the terminal gets the summary; --json prints the first rows).'
    bad = [d for d in args.images_under if not os.path.isdir(d)]
    return f'--images-under must name a folder, got {bad[0]!r}.' if bad else None


def _policy(args) -> ImagePolicy:
    policy = ImagePolicy()
    for folder in args.images_under:
        policy.add_folder(folder, '--images-under')
    if args.dataset is not None:
        policy.add_folder(os.path.dirname(os.path.abspath(args.dataset)), "--dataset's folder")
    return policy


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem, settings, source = _usage_error(args), None, ''
    try:
        settings, source = _settings(args) if problem is None else (None, '')
    except CheckpointError as exc:
        problem = str(exc)
    except (ValueError, KeyError) as exc:
        problem = f'--template {args.template!r}: {exc}'
    coords = args.coords or os.environ.get(COORDS_ENV) or _trained_coords(settings)
    if problem is None and settings is not None and coords is None:  # geo_iou's rule: no guess
        problem = (f'{settings.template}: {UNTRAINED_COORDS.replace("`", "")} (or pass --coords): these checkpoints '
                   'were not trained to write boxes in a known convention, and geo_iou gives None until it is named.')
    elif problem is None and coords not in COORDS:
        problem = f'{COORDS_ENV} must be one of {list(COORDS)}, got {short(repr(coords), 40)}.'
    if problem is not None:
        echo(f'swift-ext score: {problem}', err=True)
        return 2
    try:
        result, page = _score(args, settings, coords)
        result['settings_source'] = source
        if page is not None:
            if args.html != STDOUT:
                prepare_out_dir(os.path.dirname(os.path.abspath(args.html)), named_by_user=True)
            write_named(args.html, page, option='--html')
    except (JoinError, OutputError, OSError, ValueError) as exc:
        echo(f'swift-ext score: {exc}', err=True)
        return 2
    if args.json:
        echo(json.dumps(result, indent=1))
    else:
        echo(format_text(result), err=args.html == STDOUT)  # with --html -, standard output holds the page
        echo(f'Settings: {source}', err=args.html == STDOUT)
        if args.html and args.html != STDOUT:
            echo(f'Report: {args.html}')
    if args.rows:
        echo(f'Rows: {args.rows}', err=args.json or args.html == STDOUT)
    return 0


def _score(args, settings, coords: str) -> tuple[dict, str | None]:
    """The metrics, and the page when ``--html`` is given. Raises JoinError, OutputError, OSError, ValueError."""
    by_key = args.dataset is not None and first_row_has_key(args.result, MAX_LINE) \
        and first_row_has_key(args.dataset, MAX_LINE)

    def truth():
        return DatasetTruth(args.dataset, by_key=by_key) if args.dataset is not None else None
    from tqdm import tqdm
    with tqdm(total=os.path.getsize(args.result), unit='B', unit_scale=True, desc='score', file=sys.stderr,
              disable=None, leave=False) as progress:
        keep = MAX_JSON_ROWS if args.json else 0
        if args.rows:
            with replacing(args.rows) as out:
                result = score_file(args.result, settings, coords, progress, gallery=args.gallery if args.html else 0,
                                    truth=truth(), keep_rows=keep, infer_backend=args.infer_backend,
                                    on_row=lambda r: out.write((json.dumps(r) + '\n').encode()))
        else:
            result = score_file(args.result, settings, coords, progress, gallery=args.gallery if args.html else 0,
                                truth=truth(), keep_rows=keep, infer_backend=args.infer_backend)
    result['inference'] = inference_check(args.result, settings, args.max_pixels)
    status = result.pop('_status')
    if status.refused:
        raise OutputError(f'RESULT.jsonl {args.result}: {status.refused}.')
    picks, video_picks = result.pop('_picks'), result.pop('_video_picks')
    if not args.html:
        return result, None
    policy = _policy(args)
    items = gallery_items(args.result, picks, settings, coords, policy, truth())
    gallery = draw_gallery(items, int(args.gallery_max_mb * (1 << 20)), policy.describe()) if items else None
    strips = video_strips(args.result, video_picks, VideoScores(settings.template, mode_of(args.infer_backend)),
                          policy, joined_rows(args.result, FileStatus(args.result), truth())) if video_picks else ''
    return result, report_html(result, gallery, strips)
