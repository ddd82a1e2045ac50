"""`score`: the settings the inference ran with, read from beside the result file, against those used to score.

A model answers in the frame its inference gave each image; scored under other settings (another
``IMAGE_MAX_TOKEN_NUM``, ``MAX_PIXELS`` or ``--max_pixels``), every box is read in the wrong frame and
the IoU drops with no error. So score reads what the inference recorded and warns, naming each setting
that differs:

- ``R_geometry/geometry_settings.jsonl`` and ``R_geometry/infer_args.json``, which swift-ext's plugin
  writes beside ``R.jsonl`` during ``swift infer`` (``swift_ext.inference``): the template's effective
  settings (the environment applied) and the arguments that decide geometry;
- ms-swift's ``args.json`` in the result's folder or the folder above it (``swift infer --ckpt_dir CKPT``
  writes ``CKPT/infer_result/<time>.jsonl``; the checkpoint's ``args.json`` holds ``max_pixels`` and
  ``template``, which the inference reloads).

Files are read bounded (``open_regular``, at most ``MAX_ARGS_BYTES`` / ``MAX_GEO_LINE`` per line); an
unreadable one is skipped, never fatal.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ...families import family_of
from ...inference import ARGS_FILE, ROLE, log_dir_for
from ...runlog import MAX_ARGS_BYTES, MAX_GEO_LINE, SETTINGS_FILE
from ...settings import diff_settings
from ..bounded import FileStatus, iter_lines, open_regular, refuse_reason, short

SWIFT_ARGS = 'args.json'


def _read_json(path: str) -> dict:
    if refuse_reason(path):
        return {}
    try:
        with open_regular(path) as f:
            data = f.read(MAX_ARGS_BYTES + 1)
        value = json.loads(data) if len(data) <= MAX_ARGS_BYTES else None
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _recorded_settings(log_dir: str) -> dict | None:
    """The settings the inference's template logged (role 'inference' first), or None."""
    path = os.path.join(log_dir, SETTINGS_FILE)
    if refuse_reason(path):
        return None
    found = None
    for _, rec in iter_lines(path, FileStatus(path), max_line=MAX_GEO_LINE):
        if isinstance(rec, dict) and isinstance(rec.get('settings'), dict):
            if rec.get('role') == ROLE:
                return rec['settings']
            found = found or rec['settings']
    return found


def _where(path: str, result_path: str) -> str:
    return os.path.relpath(path, os.path.dirname(os.path.abspath(result_path)))


def _hint(key: str, env_vars: tuple[str, ...]) -> str:
    if key == 'swift_max_pixels':
        return 'pass the same --max_pixels'
    if key.startswith('versions.'):
        return 'another library version'
    names = ', '.join(env_vars) if env_vars else 'the environment'
    return f'set the same environment ({names}) or --max_pixels'


def inference_check(result_path: str, settings, swift_max_pixels: int | None) -> dict[str, Any]:
    """What the inference recorded beside ``result_path`` and how it differs from ``settings``.

    Returns ``{'sources': [files read], 'warnings': [one line per differing setting]}``.
    """
    sources: list[str] = []
    warnings: list[str] = []
    try:
        env_vars = tuple(family_of(settings.template)[0].env_vars)
    except (ValueError, AttributeError):
        env_vars = ()
    log_dir = log_dir_for(result_path)
    recorded = _recorded_settings(log_dir)
    if recorded is not None:
        where = _where(os.path.join(log_dir, SETTINGS_FILE), result_path)
        sources.append(where)
        now = settings.to_dict()
        if recorded.get('template') not in (None, now.get('template')):
            warnings.append(f"the inference ran template {short(str(recorded['template']), 60)} ({where}); "
                            f'scoring uses {now.get("template")}')
        for key, (then, current) in diff_settings(recorded, now).items():
            if key.startswith('versions.') or key in ('box_styles',):
                continue  # not geometry: a library version or an answer style the score does not depend on
            warnings.append(f'{key} was {short(repr(then), 40)} at inference ({where}), {short(repr(current), 40)} '
                            f'now: {_hint(key, env_vars)} as the inference, or boxes are read in another frame')
    for path in (os.path.join(log_dir, ARGS_FILE),
                 os.path.join(os.path.dirname(os.path.abspath(result_path)), SWIFT_ARGS),
                 os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(result_path))), SWIFT_ARGS)):
        args = _read_json(path)
        if not args:
            continue
        where = _where(path, result_path)
        sources.append(where)
        then = args.get('max_pixels')
        if 'max_pixels' in args and then != swift_max_pixels and recorded is None:
            warnings.append(f'--max_pixels was {short(repr(then), 40)} at inference ({where}), '
                            f'{swift_max_pixels!r} now: pass the same --max_pixels as the inference')
        template = args.get('template')
        if isinstance(template, str) and template and template.removesuffix('_geo') != \
                settings.template.removesuffix('_geo'):
            warnings.append(f'the inference ran template {short(template, 60)} ({where}); scoring uses '
                            f'{settings.template}')
        break  # the nearest file speaks for the inference
    return {'sources': sources, 'warnings': list(dict.fromkeys(warnings))}
