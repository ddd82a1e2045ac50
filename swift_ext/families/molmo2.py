"""Molmo2 (``molmo2``): a 378 global view plus overlapping 378 crops, pooled 2 x 2.

ms-swift's ``Molmo2Template._prepare_mm_inputs`` calls the checkpoint's image processor
(``Molmo2ImageProcessor``, remote code in allenai/Molmo2-4B / -8B / -O-7B,
``image_processing_molmo2.py``, Apache-2.0) and expands each ``<|image|>`` to the tokens of
``processor.get_image_tokens(image_grid)`` (``processing_molmo2.py``). Reproduced here:

* ``select_tiling(h - m, w - m, crop_window, max_crops)`` with ``m = patch * (left + right margin)``
  (14 x 8 = 112) and ``crop_window = (378 // 14 - 8) * 14`` = 266: over the (rows, cols) tilings
  with at most ``max_crops`` (8) crops, sorted by (crops, rows), the one needing the least
  upscaling, or, when every tiling must downscale, the least downscaling (float32 arithmetic);
* the image is resized (not aspect-kept) to ``(rows * 266 + 112, cols * 266 + 112)`` (h, w) and cut
  into ``rows x cols`` overlapping 378 crops; the global view is the image resized to 378 x 378;
* pooled grids: the global view's 27 x 27 patches pooled 2 x 2 (padded to 28): 14 x 14; the
  crops' ``(rows * 19 + 8) x (cols * 19 + 8)`` non-overlapping patches pooled likewise (ceil);
  ``image_grids`` = ``[lo_h, lo_w, hi_h, hi_w]``;
* tokens: ``<low_res_im_start>`` + lo_h rows of (lo_w patches [+ ``<im_col>``]) + ``<im_end>``, then
  ``<im_start>`` + hi_h rows of (hi_w patches + ``<im_col>``) + ``<im_end>`` (``image_use_col_tokens``,
  ``use_single_crop_col_tokens``, ``use_single_crop_start_token``: the processor's settings).

Coordinates: Molmo models answer points (``<points ...>``), not boxes: no trained box output.

Verification: ``published_code``: the processor is remote code and the template needs the model;
``tests/unit/test_family_molmo2.py`` pins the arithmetic to a table computed with the published
``select_tiling`` / ``image_to_patches_and_grids`` / ``get_image_tokens`` (``tests/data/molmo2/``).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace

from ..geometry import GeometryError, ImageGeometry, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import encoded_rows

_SOURCE = 'Molmo2 answers points (<points ...>), not boxes: no trained box output'


@dataclass(frozen=True)
class Molmo2Settings(PreprocessSettings):
    base_size: int = 378
    patch_size: int = 14
    max_crops: int = 8
    overlap_margins: tuple[int, int] = (4, 4)
    pooling_h: int = 2
    pooling_w: int = 2
    image_use_col_tokens: bool = True
    use_single_crop_col_tokens: bool | None = None
    use_single_crop_start_token: bool = True


def _f32(x: float) -> float:
    """``x`` rounded to float32 (numpy's float32 division, reproduced exactly for these operands)."""
    return struct.unpack('f', struct.pack('f', x))[0]


def _scale(candidate: int, size: int) -> float:
    if size == 0:  # numpy: x / 0 = inf (errstate ignored); the processor's comment expects this
        return math.inf
    return _f32(candidate / size)


def select_tiling(*, height: int, width: int, window: int, max_crops: int) -> tuple[int, int]:
    """``(rows, cols)`` as Molmo2's ``select_tiling(h, w, patch_size=window, max_num_crops)`` picks it."""
    tilings = sorted(((i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops),
                     key=lambda x: (x[0] * x[1], x[0]))
    scales = [min(_scale(i * window, height), _scale(j * window, width)) for i, j in tilings]
    if all(s < 1 for s in scales):
        best = max(scales)
        return tilings[scales.index(best)]
    scales = [1e10 if s < 1.0 else s for s in scales]
    return tilings[scales.index(min(scales))]


def molmo2_grids(settings: Molmo2Settings, *, width: int,
                 height: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """``((rows, cols), (lo_h, lo_w, hi_h, hi_w))``: the crop tiling and ``image_grids``."""
    left, right = settings.overlap_margins
    crop_patches = settings.base_size // settings.patch_size
    window = (crop_patches - left - right) * settings.patch_size
    margin = settings.patch_size * (left + right)
    rows, cols = select_tiling(height=height - margin, width=width - margin, window=window,
                               max_crops=settings.max_crops)
    patches_h = (rows * window + margin) // settings.patch_size
    patches_w = (cols * window + margin) // settings.patch_size
    return (rows, cols), (-(-crop_patches // settings.pooling_h), -(-crop_patches // settings.pooling_w),
                          -(-patches_h // settings.pooling_h), -(-patches_w // settings.pooling_w))


def molmo2_tokens(settings: Molmo2Settings, grid: tuple[int, int, int, int]) -> int:
    """``len(get_image_tokens(image_grid))``."""
    lo_h, lo_w, hi_h, hi_w = grid
    single_col = (settings.image_use_col_tokens if settings.use_single_crop_col_tokens is None
                  else settings.use_single_crop_col_tokens)
    return (2 + lo_h * (lo_w + int(bool(single_col)))
            + 2 + hi_h * (hi_w + int(bool(settings.image_use_col_tokens))))


@register_family
class Molmo2(Family):
    name = 'molmo2'
    settings_cls = Molmo2Settings
    encoded_keys = ('image_grids',)
    templates = (untrained_spec('molmo2', coords_source=_SOURCE, verification='published_code'),)

    @classmethod
    def settings_from_template(cls, template, settings):
        p = template.processor
        ip = p.image_processor
        pooling = list(ip.pooling_size)
        single = getattr(p, 'use_single_crop_col_tokens', None)
        return replace(settings, base_size=int(ip.size['height']), patch_size=int(ip.patch_size),
                       max_crops=int(ip.max_crops), overlap_margins=tuple(int(m) for m in ip.overlap_margins),
                       pooling_h=int(pooling[0]), pooling_w=int(pooling[1]),
                       image_use_col_tokens=bool(p.image_use_col_tokens),
                       use_single_crop_col_tokens=None if single is None else bool(single),
                       use_single_crop_start_token=bool(p.use_single_crop_start_token))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        if settings.max_crops < 1:
            raise GeometryError(f'{name}: Molmo2 max_crops must be at least 1, got {settings.max_crops}.')
        (rows, cols), grid = molmo2_grids(settings, width=width, height=height)
        left, right = settings.overlap_margins
        window = (settings.base_size // settings.patch_size - left - right) * settings.patch_size
        margin = settings.patch_size * (left + right)
        rw, rh = cols * window + margin, rows * window + margin
        geo = ImageGeometry(original_width=width, original_height=height, resized_width=rw, resized_height=rh,
                            num_tokens=molmo2_tokens(settings, grid), tile_cols=cols, tile_rows=rows,
                            num_tiles=rows * cols + 1, thumbnail=True, global_width=settings.base_size,
                            global_height=settings.base_size, extra=(('image_grid', grid),))
        return geo, fit_clamp(width=width, height=height, resized_width=rw, resized_height=rh)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        grids = encoded_rows(encoded, 'image_grids')
        if grids is None or len(grids) != len(predicted):
            return list(predicted)
        settings = template.geo_settings()
        out = []
        for geo, grid in zip(predicted, grids, strict=False):
            if geo is None:
                out.append(None)
                continue
            grid = tuple(int(v) for v in grid)
            out.append(updated(geo, num_tokens=molmo2_tokens(settings, grid), extra=(('image_grid', grid),)))
        return out
