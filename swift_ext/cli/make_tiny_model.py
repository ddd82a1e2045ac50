"""`swift-ext make-tiny-model --family PARENT --out DIR [--seed N]`: a tiny random checkpoint for a parent template."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ..testing.tiny import DEFAULT_SEED, make_tiny_model, parents, run_flags
from .text import ArgumentParser, echo


def build_parser(prog: str = 'swift-ext make-tiny-model') -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog, description='Write a tiny random vision-language checkpoint that ms-swift loads offline.')
    parser.add_argument('--family', required=True, choices=parents(), metavar='PARENT',
                        help='the ms-swift parent template: ' + ', '.join(parents()))
    parser.add_argument('--out', required=True, help='output directory (missing or empty)')
    parser.add_argument('--seed', type=int, default=DEFAULT_SEED, help='seed for the random weights')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``swift-ext make-tiny-model --family PARENT --out DIR [--seed N]``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        path = make_tiny_model(args.family, args.out, seed=args.seed)
    except (FileExistsError, OSError) as e:
        echo(f'error: {e}', err=True)
        return 2
    flags = run_flags(args.family)
    echo(path)
    common = f'--model {path} --model_type {flags["model_type"]} --template {flags["template"]}'
    # --check_model is a training argument: `swift infer` stops on it (an unknown remaining argv).
    echo(f'swift sft / swift rlhf: {common} --check_model false')
    echo(f'swift infer / swift rollout: {common}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
