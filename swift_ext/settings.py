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
from .geometry import ImageGeometry, VideoGeometry

# Internal, but the one door to the families' settings: PreprocessSettings and settings_from_dict are
# re-exported from swift_ext.families on purpose (callers need not know which family holds a template).
__all__ = ['PreprocessSettings', 'default_settings', 'settings_for', 'settings_from_dict', 'diff_settings',
           'predict_geometry', 'predict_video_geometry', 'template_parent', 'with_budget']


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


def predict_video_geometry(template: str, *, width: int, height: int, total_frames: int, video_fps: float,
                           row_kwargs: Mapping | None = None, env: Mapping[str, str] | None = None,
                           mode: str = 'train') -> VideoGeometry:
    """What ``template`` (a `_geo` template with video geometry) does to a video, from its header values.

    Args:
        template: a `_geo` template name (or its parent's) whose family has video geometry
            (``swift-ext templates``: the Qwen family and its relatives).
        width, height: the decoded frame size; total_frames, video_fps: as the video reader reports
            them (``swift_ext.video_io.read_video_header`` reads them from a file without decoding).
        row_kwargs: the row's ``chat_template_kwargs`` (``fps``, ``nframes``, ``min_pixels`` /
            ``max_pixels``, ``video_start`` / ``video_end``, ...).
        env: the environment ms-swift would read (``FPS``, ``FPS_MAX_FRAMES``, ``VIDEO_MAX_PIXELS``,
            ``VIDEO_MAX_TOKEN_NUM``, ``MODEL_SEQ_LEN``, ...); default: the values ms-swift patched into
            qwen-vl-utils in this process, else ``os.environ``.
        mode: the template mode: ``'vllm'`` measures Qwen3-VL's ``<t seconds>`` from the clip's first
            frame, as ms-swift 4.6 hands vLLM its frames.

    Raises:
        VideoError: (a ``GeometryError``) where qwen-vl-utils would refuse the video.
        ValueError: a template without video geometry.

    Example:
        >>> geo = predict_video_geometry('qwen2_5_vl_geo', width=640, height=360, total_frames=300,
        ...                              video_fps=30.0, env={})
        >>> (geo.num_frames, geo.frame_indices[:3], geo.resized_width, geo.resized_height, geo.num_tokens)
        (20, (0, 16, 31), 644, 364, 2990)
        >>> geo.frame_times[:3], geo.second_per_grid_ts
        ((0.0, 0.5333333333333333, 1.0333333333333334), 1.0)
    """
    family, spec = family_of(template)
    if not family.records_video(spec.parent):
        raise ValueError(f'template {spec.name!r} ({family.name} family) has no video geometry in swift-ext; '
                         '`swift-ext templates` lists those that have.')
    settings = family.video_settings(spec.parent, env=env)
    return family.predict_video(spec.parent, settings, width=width, height=height, total_frames=total_frames,
                                video_fps=video_fps, row_kwargs=dict(row_kwargs or {}), mode=mode, name='video')
