"""`swift-ext review RUN_DIR`: what image preprocessing did in a training run, from its logs."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ...runlog import COMPLETIONS_FILE, GEOMETRY_GLOB, LOGGING_FILE
from ..bounded import refuse_reason
from ..output import prepare_out_dir
from .read import find_runs, has_logs, log_paths
from .report import format_text, write_report
from .summary import summarize


def build_parser(prog: str = 'swift-ext review') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('run_dir', metavar='RUN_DIR',
                   help='the run folder (v<N>-<time>/), or the --output_dir holding such folders')
    p.add_argument('--out', help='report folder (default RUN_DIR/review); with --all, one subfolder per run')
    p.add_argument('--all', action='store_true', help='review every v<N>-<time>/ run in RUN_DIR')
    p.add_argument('--json', action='store_true', help='print the summary as JSON')
    p.add_argument('--no-plots', action='store_true', help='write no PNGs (report.html has tables only)')
    p.add_argument('--gallery', type=int, default=12, metavar='N',
                   help='rollouts shown with their boxes (needs --log_completions true runs; 0: none)')
    p.add_argument('--gallery-max-mb', type=float, default=4.0, metavar='MB',
                   help='bound on the embedded gallery images (default 4 MB)')
    p.add_argument('--coords', choices=('abs', 'norm1000', 'norm1'),
                   help="the model's box convention (default: the template's, as the rewards read it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.run_dir):
        print(f'swift-ext review: RUN_DIR must be a folder, got {args.run_dir!r}.', file=sys.stderr)
        return 2
    if args.gallery < 0 or not args.gallery_max_mb > 0:
        print('swift-ext review: --gallery must be >= 0 and --gallery-max-mb > 0, '
              f'got {args.gallery} and {args.gallery_max_mb}.', file=sys.stderr)
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
        print(f'swift-ext review: {args.run_dir} holds no run logs: expected {LOGGING_FILE}, {COMPLETIONS_FILE} '
              f'or {GEOMETRY_GLOB} in it, or v<N>-<time>/ run folders that hold them.', file=sys.stderr)
        return None
    if args.all:
        print(f'Reviewing {len(runs)} run(s) in {args.run_dir}.', file=sys.stderr)
        return [(r, os.path.join(args.out, os.path.basename(r)) if args.out else None) for r in runs]
    names = ', '.join(os.path.basename(r) for r in runs)
    print(f'{args.run_dir} holds {len(runs)} run(s) ({names}); reviewing the newest, '
          f'{os.path.basename(runs[-1])}. Use --all to review each.', file=sys.stderr)
    return [(runs[-1], args.out)]


def _review_one(args, run_dir: str, out: str | None) -> int:
    total = sum(os.path.getsize(p) for p in log_paths(run_dir) if refuse_reason(p) is None)
    from tqdm import tqdm
    with tqdm(total=total, unit='B', unit_scale=True, desc='review', file=sys.stderr,
              disable=None, leave=False) as progress:
        summary = summarize(run_dir, progress, gallery=args.gallery, coords=args.coords,
                            gallery_max_bytes=int(args.gallery_max_mb * (1 << 20)))
    try:
        out_dir = prepare_out_dir(out or os.path.join(run_dir, 'review'), named_by_user=out is not None)
        report = write_report(summary, out_dir, plots=not args.no_plots)
    except OSError as exc:
        print(f'swift-ext review: {exc}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary.to_json(), indent=1, default=str))
    else:
        print(format_text(summary))
        print(f'Report: {report}')
    return 0
