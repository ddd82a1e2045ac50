"""A `_geo` template's effective image preprocessing, with or without the template (internal; the public
``predict_geometry`` is re-exported by ``swift_ext``).

Pure data and arithmetic (no torch or swift import), so that rewards running in another
process, ``swift-ext plan`` and ``swift-ext check`` all use the same numbers as the live
template. Each family's settings class lives in its module under ``swift_ext.families``;
this module is the one door to them.

Internal module: ``swift_ext.predict_geometry`` is the public door.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .families import family_of, settings_from_dict
from .families.base import PreprocessSettings
from .geometry import ImageGeometry

# Internal, but the one door to the families' settings: PreprocessSettings and settings_from_dict are
# re-exported from swift_ext.families on purpose (callers need not know which family holds a template).
__all__ = ['PreprocessSettings', 'default_settings', 'settings_for', 'settings_from_dict', 'diff_settings',
           'predict_geometry', 'template_parent', 'with_budget']


def template_parent(template: str) -> str:
    """'qwen2_5_vl_geo' -> 'qwen2_5_vl'; refuses names no family serves."""
    return family_of(template)[1].parent


def default_settings(template: str, *, swift_max_pixels: int | None = None,
                     **overrides: Any) -> PreprocessSettings:
    """The settings a `_geo` template has with the real checkpoint's processor and no environment.

    ``overrides`` are family settings (``max_pixels=`` for Qwen, ``max_num=`` for InternVL, ...),
    taken as ms-swift's variables of the same name would set them.
    """
    return settings_for(template, env={}, swift_max_pixels=swift_max_pixels, **overrides)


def settings_for(template: str, *, env: Mapping[str, str] | None = None,
                 swift_max_pixels: int | None = None, **overrides: Any) -> PreprocessSettings:
    """The settings a `_geo` template runs with under ms-swift's flags and environment.

    ``env`` defaults to ``os.environ``; ``swift_max_pixels`` is ms-swift's ``--max_pixels``;
    ``overrides`` (``None`` values ignored) are applied after the environment, as a command
    line flag of swift-ext's own (``plan --max_num``) would be.
    """
    family, spec = family_of(template)
    env = os.environ if env is None else env
    known = {f.name for f in dataclasses.fields(family.settings_cls)}
    return family.settings_for(spec.parent, env=env, swift_max_pixels=swift_max_pixels,
                               overrides={k: v for k, v in overrides.items() if v is not None and k in known})


def with_budget(settings: PreprocessSettings, pixels: int) -> PreprocessSettings:
    """``settings`` under a pixel budget, applied as the family's ``sweep_knob``."""
    family, _ = family_of(settings.template)
    return family.with_budget(settings, pixels)


def diff_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict:
    """``{setting: (a_value, b_value)}`` for every geometry setting that differs."""
    out = {}
    for key in sorted(set(a) | set(b)):
        if key == 'template':
            continue
        va, vb = a.get(key), b.get(key)
        if key == 'versions':
            for lib in sorted(set(va or {}) | set(vb or {})):
                if (va or {}).get(lib) != (vb or {}).get(lib):
                    out[f'versions.{lib}'] = ((va or {}).get(lib), (vb or {}).get(lib))
        elif va != vb and not (_is_nan(va) and _is_nan(vb)):
            out[key] = (va, vb)
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value




def predict_geometry(template: str, *, width: int, height: int, row_kwargs: Mapping | None = None,
                     swift_max_pixels: int | None = None,
                     env: Mapping[str, str] | None = None) -> ImageGeometry:
    """What `template` (a registered `_geo` template) does to a ``width`` x ``height`` image.

    Args:
        template: a `_geo` template name (or its parent's), see ``swift-ext templates``.
        width, height: the image file's size in pixels.
        row_kwargs: the dataset row's ``chat_template_kwargs`` (per-row limits).
        swift_max_pixels: ms-swift's ``--max_pixels`` (a pre-rescale before the model's own resize).
        env: the environment ms-swift would read (``MAX_PIXELS``, ``MAX_NUM``, ...); default ``os.environ``.

    Raises:
        GeometryError: (a ``ValueError``) where the parent template refuses the image.

    Example:
        >>> geo = predict_geometry('qwen2_5_vl_geo', width=640, height=480, env={})
        >>> (geo.resized_width, geo.resized_height, geo.num_tokens)
        (644, 476, 391)
        >>> [round(v, 1) for v in geo.to_model_frame([64, 48, 320, 240], 'abs')]
        [64.4, 47.6, 322.0, 238.0]
        >>> geo = predict_geometry('internvl3_5_geo', width=800, height=600, env={'MAX_NUM': '6'})
        >>> (geo.tile_cols, geo.tile_rows, geo.num_tiles, geo.num_tokens)
        (3, 2, 7, 1792)
    """
    settings = settings_for(template, env=env, swift_max_pixels=swift_max_pixels)
    return settings.predict(width=width, height=height, row_kwargs=row_kwargs)[0]
