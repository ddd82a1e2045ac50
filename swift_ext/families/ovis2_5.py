"""Ovis2.5 (``ovis2_5``): the model's visual tokenizer resizes (smart_resize to multiples of 32).

ms-swift's ``Ovis2_5Template`` needs the model (``use_model = True``): ``_encode`` calls
``model.visual_tokenizer.preprocess(image=..., min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)``
from the checkpoint's ``modeling_ovis2_5.py`` (AIDC-AI/Ovis2.5-2B / -9B, remote code) and
expands each image to ``[-301] + [-300] * n + [-302]`` with ``n = grid_thws.prod() //
hidden_stride**2 // temporal_patch_size``. ``preprocess`` sizes the image with
``VisualTokenizer.smart_resize(height, width, factor=patch_size * hidden_stride)``, reproduced here:

* a side under ``factor``: the short side becomes ``factor`` and the other ``round(factor /
  short * long)`` (an upscale, not a refusal);
* else an aspect ratio over 200: the long side is cut to ``200 x`` the short one (no refusal);
* sides rounded to multiples of ``factor``; over ``max_pixels`` floored after scaling by
  ``sqrt(h * w / max_pixels)``, under ``min_pixels`` ceiled after scaling up.

Ovis2.5-9B's vision config: patch 16, ``hidden_stride`` 2, ``temporal_patch_size`` 1 (factor 32).

``init_env_args`` reads ``MIN_PIXELS`` (448 x 448) and ``MAX_PIXELS`` (1344 x 1792) and stores the
latter in ``template.max_pixels``, the attribute ms-swift's own pre-rescale reads: ``--max_pixels``
is overwritten, and every image over ``MAX_PIXELS`` is first shrunk by ``rescale_image``. ``resize``
applies that pre-rescale itself (a no-op where the template's state already did), so predictions
made without a template (``plan``) agree with the template's.

Verification: ``published_code``: no encode runs without the Ovis2.5 model (remote code).
``tests/unit/test_family_ovis2_5.py`` pins the arithmetic to a table computed with the published
``smart_resize`` (``tests/data/ovis2_5/``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import Clamp, ImageGeometry, swift_rescaled_size, updated
from . import register_family
from .base import Family, PreprocessSettings, env_int, row_number, untrained_spec
from .encoded import token_runs, tolist

OVIS_MIN_PIXELS = 448 * 448
OVIS_MAX_PIXELS = 1344 * 1792
OVIS_MAX_RATIO = 200
VISUAL_ATOM_ID = -300
IMAGE_INDICATORS = (-301, -302)

_SOURCE = ('no box output documented in the Ovis2.5 model cards; ms-swift keeps '
           "Template.norm_bbox='norm1000' for Ovis2_5Template")


@dataclass(frozen=True)
class Ovis2_5Settings(PreprocessSettings):
    patch_size: int = 16
    hidden_stride: int = 2
    temporal_patch_size: int = 1
    min_pixels: int = OVIS_MIN_PIXELS
    max_pixels: int = OVIS_MAX_PIXELS

    @property
    def factor(self) -> int:
        return self.patch_size * self.hidden_stride


def ovis_smart_resize(*, width: int, height: int, factor: int = 32, min_pixels: int = OVIS_MIN_PIXELS,
                      max_pixels: int = OVIS_MAX_PIXELS) -> tuple[tuple[int, int], Clamp | None]:
    """``VisualTokenizer.smart_resize`` as ``((width, height), clamp)`` (it never refuses an image)."""
    clamp = None
    if height < factor or width < factor:
        if height < width:
            width, height = round(factor / height * width), factor
        else:
            height, width = round(factor / width * height), factor
        clamp = Clamp.UPSCALE
    elif max(height, width) / min(height, width) > OVIS_MAX_RATIO:
        if height > width:
            height = OVIS_MAX_RATIO * width
        else:
            width = OVIS_MAX_RATIO * height
        clamp = Clamp.CANVAS_FIT  # the long side is cut to 200 x the short one: a stretch
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
        clamp = Clamp.MAX_PIXELS
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
        clamp = Clamp.MIN_PIXELS
    return (w_bar, h_bar), clamp


@register_family
class Ovis2_5(Family):
    name = 'ovis2_5'
    settings_cls = Ovis2_5Settings
    encoded_keys = ('input_ids', 'grid_thws')
    sweep_knob = 'MAX_PIXELS'
    env_vars = ('MIN_PIXELS', 'MAX_PIXELS')
    templates = (untrained_spec('ovis2_5', coords_source=_SOURCE, verification='published_code'),)

    @classmethod
    def settings_from_env(cls, settings, env):
        changes = {'min_pixels': env_int(env, 'MIN_PIXELS'), 'max_pixels': env_int(env, 'MAX_PIXELS')}
        return replace(settings, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def settings_from_template(cls, template, settings):
        settings = replace(settings, min_pixels=int(template.min_pixels), max_pixels=int(template.max_pixels))
        # The ViT config as the encode reads it (model.visual_tokenizer.vit.config); from the checkpoint's
        # config.json when no model is attached yet, without building one (ms-swift's _get_model would).
        model = getattr(template, 'model', None)
        vit = (model.visual_tokenizer.vit.config if model is not None
               else getattr(getattr(getattr(template, 'model_info', None), 'config', None), 'vit_config', None))
        if vit is None:
            return settings
        return replace(settings, patch_size=int(vit.patch_size), hidden_stride=int(vit.hidden_stride),
                       temporal_patch_size=int(getattr(vit, 'temporal_patch_size', 1)))

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, max_pixels=pixels)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        # The template's own pre-rescale at MAX_PIXELS (template.max_pixels), unless the row names its own
        # max_pixels (Template._get_max_pixels prefers the row's; the base class applied that one).
        w, h = width, height
        if row_number(row_kwargs, 'max_pixels', name) is None:
            w, h = swift_rescaled_size(width=width, height=height, max_pixels=settings.max_pixels, name=name)
        (rw, rh), clamp = ovis_smart_resize(width=w, height=h, factor=settings.factor,
                                            min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
        if (w, h) != (width, height):
            clamp = Clamp.MAX_PIXELS
        grid = (1, rh // settings.patch_size, rw // settings.patch_size)
        atoms = grid[1] * grid[2] // settings.hidden_stride ** 2 // settings.temporal_patch_size
        return ImageGeometry(original_width=width, original_height=height, resized_width=rw, resized_height=rh,
                             num_tokens=atoms + len(IMAGE_INDICATORS), grid=grid), clamp

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        grids = encoded.get('grid_thws')
        if grids is None:
            return list(predicted)
        grids = tolist(grids)
        runs = token_runs(encoded['input_ids'], VISUAL_ATOM_ID)
        if not len(grids) == len(runs) == len(predicted):
            return list(predicted)
        settings = template.geo_settings()
        out = []
        for geo, (t, h, w), atoms in zip(predicted, grids, runs, strict=False):
            if geo is None:
                out.append(None)
                continue
            out.append(updated(geo, resized_width=int(w) * settings.patch_size,
                               resized_height=int(h) * settings.patch_size, grid=(int(t), int(h), int(w)),
                               num_tokens=atoms + len(IMAGE_INDICATORS)))
        return out
