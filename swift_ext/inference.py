"""`swift infer` with a `_geo` template: the geometry log goes beside the results.

A user evaluating a checkpoint runs ``swift infer ... --result_path R.jsonl``; every image the template
encodes is then logged to ``R_geometry/`` (``image_geometry.jsonl``, ``geometry_settings.jsonl`` with role
``inference``, and ``infer_args.json``: the arguments that decide geometry), so ``swift-ext score R.jsonl``
scores with the geometry and settings the inference really used. ``SWIFT_EXT_GEO_LOG_DIR`` set by hand
wins; without a result file (interactive inference) nothing is logged. ms-swift has no hook for this, so
the plugin wraps ``SwiftInfer.run`` (its pipeline's entry, after the template is built). Internal module.
"""
from __future__ import annotations

import functools
import json
import logging
import os

from . import runlog
from .recorder import recorder

logger = logging.getLogger(__name__)

ARGS_FILE = 'infer_args.json'
ROLE = 'inference'
# The arguments that decide what the template does to an image (and which model and data it was).
GEOMETRY_ARGS = ('model', 'model_type', 'template', 'max_pixels', 'infer_backend', 'val_dataset', 'result_path')


def log_dir_for(result_path: str) -> str:
    """``R_geometry`` beside ``R.jsonl``: the folder an inference's geometry log goes to."""
    stem, _ = os.path.splitext(os.path.abspath(result_path))
    return stem + '_geometry'


def install() -> None:
    """Wrap ms-swift's ``SwiftInfer.run`` once (importing the plugin again changes nothing)."""
    try:
        from swift.pipelines.infer.infer import SwiftInfer
    except ImportError:  # an ms-swift without this pipeline: inference logs only where the user names a folder
        return
    if getattr(SwiftInfer.run, 'geo_wrapped', False):
        return
    original = SwiftInfer.run

    @functools.wraps(original)
    def run(self):
        _start(self)
        try:
            return original(self)
        finally:
            recorder().flush()
    run.geo_wrapped = True
    SwiftInfer.run = run


def _start(pipeline) -> None:
    args, template = pipeline.args, getattr(pipeline, 'template', None)
    if not getattr(args, 'result_path', None) or not hasattr(template, 'geo_settings'):
        return
    if os.environ.get(runlog.ENV_DIR):  # named by hand
        return
    directory = log_dir_for(args.result_path)
    try:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, ARGS_FILE), 'w') as f:
            json.dump({k: _plain(getattr(args, k, None)) for k in GEOMETRY_ARGS}, f, indent=2)
    except OSError as exc:
        logger.warning('swift-ext: no geometry log for this inference: cannot write %s (%s).', directory, exc)
        return
    os.environ.setdefault(runlog.ENV_ROLE, ROLE)
    runlog.publish_log_dir(directory)
    runlog.log_settings(template.geo_settings())
    logger.info('swift-ext: the geometry of every image goes to %s', directory)


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)
