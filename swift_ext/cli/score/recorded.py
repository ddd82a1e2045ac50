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

import dataclasses
import json
import os
from typing import Any

from ...families import family_of
from ...geometry import GeometryError
from ...inference import ARGS_FILE, ROLE, log_dir_for
from ...runlog import MAX_ARGS_BYTES, MAX_GEO_LINE, SETTINGS_FILE
from ...settings import diff_settings, settings_from_dict
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


# Image sizes the two settings are compared on: tiny, usual, large, extreme aspect ratios.
PROBES = ((28, 28), (50, 60), (224, 224), (640, 480), (480, 640), (1280, 960), (1920, 1080), (3000, 50),
          (50, 3000), (300, 2000), (4000, 3000), (8000, 8000))


def _same_geometry(a, b) -> bool:
    """Whether two settings give every probe image the same geometry (or the same error)."""
    for width, height in PROBES:
        outcomes = []
        for s in (a, b):
            try:
                geo, clamp = s.predict(width=width, height=height)
                outcomes.append((geo.to_dict(), clamp))
            except (GeometryError, ValueError, TypeError) as exc:
                outcomes.append(type(exc).__name__)
        if outcomes[0] != outcomes[1]:
            return False
    return True


def geometry_differences(recorded: dict, settings) -> dict:
    """``{setting: (at inference, now)}`` for the settings whose difference changes some image's geometry.

    Fields can differ and mean the same (``max_pixels`` None is the processor's default of 16384 tokens,
    which a live template records as 12845056): such a field is left out. Each differing field is put
    back alone; one that changes nothing alone is left out too, unless none does (then all are named).
    """
    try:
        then = settings_from_dict(recorded)
    except (ValueError, TypeError, KeyError):
        then = None
    differ = {k: v for k, v in diff_settings(recorded, settings.to_dict()).items()
              if not k.startswith('versions.') and k != 'box_styles'}  # not geometry
    if then is not None and _same_geometry(then, settings):
        return {}
    names = {f.name for f in dataclasses.fields(settings)}
    material = {}
    for key, pair in differ.items():
        try:
            alone = dataclasses.replace(settings, **{key: recorded[key]}) if key in names else None
        except (TypeError, ValueError):
            alone = None
        if alone is None or not _same_geometry(alone, settings):
            material[key] = pair
    return material or differ


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
        for key, (then, current) in geometry_differences(recorded, settings).items():
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
