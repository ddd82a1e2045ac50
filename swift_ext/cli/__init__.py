"""`swift-ext` command line: one subcommand per module, each with its own `main(argv)`.

Internal package: the ``swift-ext`` command is its interface.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

from .text import Formatter, echo

DEBUG_ENV = 'SWIFT_EXT_DEBUG'
SUBCOMMANDS = {
    'make-tiny-model': ('swift_ext.cli.make_tiny_model', 'build a tiny random local checkpoint'),
    'demo': ('swift_ext.cli.demo', 'run the built-in GRPO grounding demo on a tiny model'),
    'review': ('swift_ext.cli.review', "summarise a run's geometry, rewards and metrics"),
    'score': ('swift_ext.cli.score', 'grounding metrics of `swift infer` results, in original pixels'),
    'plan': ('swift_ext.cli.plan', 'pre-flight: visual tokens a dataset will cost'),
    'show': ('swift_ext.cli.show', 'draw what a template hands the model for one image'),
    'check': ('swift_ext.cli.check', 'compare trainer and rollout preprocessing settings'),
    'bench': ('swift_ext.cli.bench', 'run the benchmarks'),
    'templates': ('swift_ext.cli.templates_table', 'list the registered _geo templates'),
    'plugin-path': ('swift_ext.cli.plugin_path', 'print the plugin file for --external_plugins'),
}


def _usage() -> str:
    lines = ['usage: swift-ext COMMAND [ARGS]', '', 'commands:']
    lines += [f'  {name:<16} {help_}' for name, (_, help_) in SUBCOMMANDS.items()]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        echo(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        echo(f'swift-ext: unknown command {name!r}.\n\n{_usage()}', err=True)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(Formatter('%(levelname)s %(name)s: %(message)s'))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.captureWarnings(True)  # a library's warning (which may quote a path) is printed through Formatter too
    try:
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # `swift-ext templates | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        echo(f'swift-ext {name}: interrupted.', err=True)
        return 130
    except Exception as exc:  # a bug of ours: a short message, the traceback only on request
        if os.environ.get(DEBUG_ENV):
            raise
        echo(f'swift-ext {name}: internal error: {type(exc).__name__}: {str(exc)[:500]} '
             f'(set {DEBUG_ENV}=1 for the traceback; please report it).', err=True)
        return 1


if __name__ == '__main__':
    sys.exit(main())
