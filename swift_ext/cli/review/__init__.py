"""`swift-ext review RUN_DIR`: what image preprocessing did in a training run, from its logs.

Streams, in RUN_DIR (the ``v<N>-<timestamp>`` folder): every ``image_geometry*.jsonl``
(all ranks merged), ``logging.jsonl`` and ``completions.jsonl``. Given an ``--output_dir``
that holds ``v<N>-<time>/`` runs instead, it reviews the newest and says so (``--all``:
each). With ``--log_completions true`` runs, ``report.html`` gets a gallery of rollouts.

Layers, imports running one way: ``read`` (the run's files and lines) <- ``aggregate``
(bounded statistics) <- ``join`` (completions to images) <- ``gallery`` (rows to draw) <-
``summary`` (the typed ``ReviewSummary``) <- ``plots`` / ``report`` (presentation) <-
``command`` (argparse).

Bounds (the contract; see ``bounded``): only regular files are read; lines longer than
``runlog.MAX_GEO_LINE`` (1 MiB), ``MAX_LOG_LINE`` (32 MiB) or ``MAX_COMPLETIONS_LINE`` (64 MiB)
are skipped and reported; every distribution is a ``Histogram`` of at most 4,096 bins, distinct
images are counted in bounded memory, at most ``MAX_SERIES`` metric keys are kept (``MAX_POINTS``
points each) and ``MAX_STEPS`` steps; a bad line is counted with its line number, never fatal.
Outputs are written without following symlinks (``output``).

Exit codes: 0 report written; 2 RUN_DIR unusable (not a folder, no run logs in it) or the
report could not be written.
"""
from .command import build_parser, main

__all__ = ['build_parser', 'main']
