"""`swift-ext review RUN_DIR`: what image preprocessing did in a training run, from its logs."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ...geometry import COORDS
from ...runlog import COMPLETIONS_FILE, GEOMETRY_GLOB, LOGGING_FILE
from ..bounded import refuse_reason
from ..cards import gallery_mb
from ..output import STDOUT, prepare_out_dir
from ..text import ArgumentParser, echo
from .read import find_runs, has_logs, log_paths
from .report import format_text, write_report
from .summary import summarize


def build_parser(prog: str = 'swift-ext review') -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('run_dir', metavar='RUN_DIR',
                   help='the run folder (v<N>-<time>/), or the --output_dir holding such folders')
    p.add_argument('--out', help='report folder (default RUN_DIR/review); with --all, one subfolder per run')
    p.add_argument('--all', action='store_true', help='review every v<N>-<time>/ run in RUN_DIR')
    p.add_argument('--json', action='store_true', help='print the summary as JSON')
    p.add_argument('--no-plots', action='store_true', help='write no PNGs (report.html has tables only)')
    p.add_argument('--gallery', type=int, default=12, metavar='N',
                   help='rollouts shown with their boxes (needs --log_completions true runs; 0: none)')
    p.add_argument('--gallery-max-mb', type=gallery_mb, default=4.0, metavar='MB',
                   help='bound on the embedded gallery images (default 4 MB)')
    p.add_argument('--images-under', action='append', default=[], metavar='DIR',
                   help='embed gallery images under DIR too (repeatable; by default only images under the run '
                        'folder, and those a dataset named in args.json lists under its folder)')
    p.add_argument('--coords', choices=COORDS,
                   help="the model's box convention (default: the template's, as the rewards read it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.run_dir):
        echo(f'swift-ext review: RUN_DIR must be a folder, got {args.run_dir!r}.', err=True)
        return 2
    if args.gallery < 0:
        echo(f'swift-ext review: --gallery must be >= 0, got {args.gallery}.', err=True)
        return 2
    if args.out == STDOUT:
        echo("swift-ext review: --out names a folder (report.html and its plots); '-' (standard output) "
             'cannot hold them. Use --json for the summary on standard output.', err=True)
        return 2
    for folder in args.images_under:
        if not os.path.isdir(folder):
            echo(f'swift-ext review: --images-under must name a folder, got {folder!r}.', err=True)
            return 2
    runs = _runs_to_review(args)
    if runs is None:
        return 2
    rc = 0
    for run_dir, out_dir in runs:
        rc = max(rc, _review_one(args, run_dir, out_dir))
    return rc


def _runs_to_review(args) -> list[tuple[str, str | None]] | None:
    """``[(run folder, --out or None)]``: RUN_DIR itself, or the runs it holds."""
    if has_logs(args.run_dir) and not args.all:
        return [(args.run_dir, args.out)]
    runs = find_runs(args.run_dir)
    if not runs:
        if has_logs(args.run_dir):
            return [(args.run_dir, args.out)]
        echo(f'swift-ext review: {args.run_dir} holds no run logs: expected {LOGGING_FILE}, {COMPLETIONS_FILE} '
             f'or {GEOMETRY_GLOB} in it, or v<N>-<time>/ run folders that hold them.', err=True)
        return None
    if args.all:
        echo(f'Reviewing {len(runs)} run(s) in {args.run_dir}.', err=True)
        return [(r, os.path.join(args.out, os.path.basename(r)) if args.out else None) for r in runs]
    names = ', '.join(os.path.basename(r) for r in runs)
    echo(f'{args.run_dir} holds {len(runs)} run(s) ({names}); reviewing the newest, '
         f'{os.path.basename(runs[-1])}. Use --all to review each.', err=True)
    return [(runs[-1], args.out)]


def _review_one(args, run_dir: str, out: str | None) -> int:
    total = sum(os.path.getsize(p) for p in log_paths(run_dir) if refuse_reason(p) is None)
    from tqdm import tqdm
    with tqdm(total=total, unit='B', unit_scale=True, desc='review', file=sys.stderr,
              disable=None, leave=False) as progress:
        summary = summarize(run_dir, progress, gallery=args.gallery, coords=args.coords,
                            images_under=args.images_under,
                            gallery_max_bytes=int(args.gallery_max_mb * (1 << 20)))
    try:
        out_dir = prepare_out_dir(out or os.path.join(run_dir, 'review'), named_by_user=out is not None)
        report = write_report(summary, out_dir, plots=not args.no_plots)
    except OSError as exc:
        echo(f'swift-ext review: {exc}', err=True)
        return 2
    if args.json:
        echo(json.dumps(summary.to_json(), indent=1, default=str))
    else:
        echo(format_text(summary))
        echo(f'Report: {report}')
    return 0
