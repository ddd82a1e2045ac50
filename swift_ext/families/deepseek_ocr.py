"""DeepSeek-OCR and DeepSeek-OCR-2 (``deepseek_ocr``, ``deepseek_ocr2``): a padded global view plus tiles.

ms-swift's ``DeepseekOCR._preprocess_image`` (its own arithmetic, reproduced here) with
``dynamic_preprocess`` loaded from the checkpoint's remote code (``modeling_deepseekocr.py`` /
``modeling_deepseekocr2.py`` of deepseek-ai/DeepSeek-OCR / DeepSeek-OCR-2, MIT), called with its
defaults: ``min_num=2, max_num=9, image_size=640`` (v1) / ``max_num=6, image_size=768`` (v2).

With ``crop_mode`` (env ``CROP_MODE``, default on), per image:

* both sides <= ``crop_threshold`` (640 / 768): no tiles; otherwise ``dynamic_preprocess``: the
  InternVL grid rule (``set(...)`` of grids with 2 to ``max_num`` tiles sorted by area, the
  closest aspect ratio, ties to more tiles while they cover under twice the image) and the image
  stretched onto ``cols x rows`` tiles of 640 / 768;
* the global view: ``ImageOps.pad(image, (base_size, base_size))`` (env ``BASE_SIZE``, 1024);
* tokens, with ``q(s) = ceil((s // 16) / 4)``: v1 ``(q(base) + 1) * q(base) + 1`` plus
  ``(q(image_size) * cols + 1) * (q(image_size) * rows)`` with tiles; v2 ``q(base)**2 + 1`` plus
  ``(q(image_size) * cols) * (q(image_size) * rows)`` (v1 has a newline token per row).

Without ``crop_mode``: one view of ``image_size`` (env ``IMAGE_SIZE``, default 640 / 768),
squashed to a square when ``image_size <= crop_threshold``, else padded; ``q(image_size)`` rows.

``image_size`` (``IMAGE_SIZE``) changes the token count but not the tiles: ms-swift does not pass
it to ``dynamic_preprocess``, whose own default (``tile_size`` here) cuts them.

Coordinates: DeepSeek-OCR's grounding answers ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>``
in 0-999 of the image (``modeling_deepseekocr.py::draw_bounding_boxes``: ``x / 999 * image_width``).

Verification: ``published_code``: the remote code is not available offline. The tiling is pinned to
a table computed with the published ``dynamic_preprocess`` (``tests/data/deepseek_ocr/``) and to
transformers' native ``deepseek_ocr2`` image processor (``get_optimal_tiled_canvas``,
``get_number_of_image_patches``: identical grids for both versions' parameters). ms-swift's own
arithmetic runs for real: ``tests/unit/test_family_deepseek_ocr.py`` encodes with the real template
classes (byte-identical ``_geo`` and parent, recorded geometry = the encode's token runs and
``images_spatial_crop``), transformers' tiling standing in for the remote ``dynamic_preprocess``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import ImageGeometry, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int
from .deepseek_vl2 import DEEPSEEK_BOX, pil_pad_layout
from .encoded import predicted_tokens, token_id, token_runs
from .internvl import closest_grid, swift_tile_grids

_SOURCE = ('DeepSeek-OCR grounding: <|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>, 0-999 of the image '
           '(modeling_deepseekocr.py draw_bounding_boxes: x / 999 * image width)')
_TRUE, _FALSE = ('y', 'yes', 't', 'true', 'on', '1'), ('n', 'no', 'f', 'false', 'off', '0')
_V2 = {'version': 'v2', 'image_size': 768, 'tile_size': 768, 'crop_threshold': 768, 'max_crops': 6}


@dataclass(frozen=True)
class DeepseekOCRSettings(PreprocessSettings):
    version: str = 'v1'
    crop_mode: bool = True
    base_size: int = 1024
    image_size: int = 640  # IMAGE_SIZE: the token count of a tile / the single view
    tile_size: int = 640  # dynamic_preprocess's own image_size default
    crop_threshold: int = 640
    # dynamic_preprocess's own defaults: ms-swift passes none and reads no environment variable for them.
    min_crops: int = 2
    max_crops: int = 9
    patch_size: int = 16
    downsample_ratio: int = 4

    def queries(self, size: int) -> int:
        return math.ceil((size // self.patch_size) / self.downsample_ratio)


def ocr_tokens(settings: DeepseekOCRSettings, cols: int, rows: int) -> int:
    """``len(tokenized_image)`` for one image with a ``cols`` x ``rows`` tile grid (0 x 0: no tiles)."""
    v2 = settings.version == 'v2'
    if not settings.crop_mode:
        q = settings.queries(settings.image_size)
        return q * q + 1 if v2 else (q + 1) * q + 1
    qb, q = settings.queries(settings.base_size), settings.queries(settings.image_size)
    tokens = qb * qb + 1 if v2 else (qb + 1) * qb + 1
    if cols * rows:
        tokens += (q * cols) * (q * rows) if v2 else (q * cols + 1) * (q * rows)
    return tokens


@register_family
class DeepseekOCR(Family):
    name = 'deepseek_ocr'
    settings_cls = DeepseekOCRSettings
    env_vars = ('CROP_MODE', 'BASE_SIZE', 'IMAGE_SIZE')
    templates = (
        TemplateSpec('deepseek_ocr', 'norm999', DEEPSEEK_BOX, coords_source=_SOURCE, verification='published_code'),
        TemplateSpec('deepseek_ocr2', 'norm999', DEEPSEEK_BOX, coords_source=_SOURCE.replace('deepseekocr',
                                                                                             'deepseekocr2'),
                     defaults=_V2, verification='published_code'),
    )

    @classmethod
    def settings_from_env(cls, settings, env):
        changes = {'base_size': env_int(env, 'BASE_SIZE'), 'image_size': env_int(env, 'IMAGE_SIZE')}
        crop = env.get('CROP_MODE')
        if crop not in (None, ''):  # ms-swift's get_env_args(bool) parses it with strtobool
            value = crop.strip().lower()
            if value not in _TRUE + _FALSE:
                raise ValueError(f'environment variable CROP_MODE must be one of {list(_TRUE + _FALSE)}, got {crop!r}.')
            changes['crop_mode'] = value in _TRUE
        return replace(settings, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def settings_from_template(cls, template, settings):
        return replace(settings, crop_mode=bool(template.crop_mode), base_size=int(template.base_size),
                       image_size=int(template.image_size), crop_threshold=int(template.crop_threshold))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        if not settings.crop_mode:
            size = settings.image_size
            if size <= settings.crop_threshold:  # squashed to a square, then the pad is a no-op
                cw, ch = size, size
            else:
                cw, ch, _, _ = pil_pad_layout(width=width, height=height, canvas_width=size, canvas_height=size)
            geo = ImageGeometry(original_width=width, original_height=height, resized_width=cw, resized_height=ch,
                                num_tokens=ocr_tokens(settings, 1, 1), global_width=size, global_height=size)
            return geo, fit_clamp(width=width, height=height, resized_width=cw, resized_height=ch)
        base = settings.base_size
        gw, gh, left, top = pil_pad_layout(width=width, height=height, canvas_width=base, canvas_height=base)
        if width <= settings.crop_threshold and height <= settings.crop_threshold:
            geo = ImageGeometry(original_width=width, original_height=height, resized_width=gw, resized_height=gh,
                                num_tokens=ocr_tokens(settings, 0, 0), global_width=base, global_height=base,
                                extra=(('global_pad_left', left), ('global_pad_top', top)))
            return geo, fit_clamp(width=width, height=height, resized_width=gw, resized_height=gh)
        grids = swift_tile_grids(settings.min_crops, settings.max_crops)
        cols, rows = closest_grid(width=width, height=height, grids=grids, image_size=settings.tile_size)
        rw, rh = settings.tile_size * cols, settings.tile_size * rows
        geo = ImageGeometry(original_width=width, original_height=height, resized_width=rw, resized_height=rh,
                            num_tokens=ocr_tokens(settings, cols, rows), tile_cols=cols, tile_rows=rows,
                            num_tiles=cols * rows + 1, thumbnail=True, global_width=base, global_height=base,
                            extra=(('global_pad_left', left), ('global_pad_top', top)))
        return geo, fit_clamp(width=width, height=height, resized_width=rw, resized_height=rh)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        runs = token_runs(encoded['input_ids'], token_id(template, '<image>'), predicted_tokens(predicted))
        if len(runs) != len(predicted):
            return list(predicted)
        return [None if geo is None else updated(geo, num_tokens=tokens)
                for geo, tokens in zip(predicted, runs, strict=False)]
