"""Llama 4 (``llama4``): tiles of 336 on a canvas of up to 16 tiles, plus a squashed global view.

The HF processor decides the geometry inside the template's ``_encode``
(``transformers/models/llama4/image_processing_llama4.py``, ``processing_llama4.py``):

1. ``find_supported_resolutions``: every ``rows x cols`` canvas of at most ``max_patches`` (16) tiles of
   ``size`` (336); ``get_best_fit``: the canvas the image needs the least upscaling to touch (aspect
   kept), else the least downscaling, ties to the smallest area (the scales are float32 tensors,
   rounded here the same way; for sides in the thousands float64 would pick the same canvas);
2. the image is resized (aspect kept, floored, a side at least 1) into the canvas, but upscaled only
   until its larger side reaches 336 (``resize_to_max_canvas`` False): a small image grows to one tile,
   a 640 x 480 one keeps its size in a 672 x 672 canvas;
3. the content sits at the top-left, zeros right and bottom; the canvas is cut into 336-pixel tiles,
   row-major; where there is more than one tile, the whole image squashed to 336 x 336 follows as a
   global view. ``pixel_values`` holds every view of every image.

ms-swift's ``Llama4Template`` then writes each image as ``<|image_start|>``, per tile row the tiles'
``<|patch|>`` runs split by ``<|tile_x_separator|>`` and closed by ``<|tile_y_separator|>`` (more than one
tile only), ``<|image|>``, the global view's ``<|patch|>`` run, ``<|image_end|>``. A view is
``(336 / 14) ** 2 / 4`` = 144 ``<|patch|>`` tokens (patch 14, pixel shuffle 0.5); ``num_tokens`` counts the
``<|patch|>`` tokens (where the model puts vision features), not the few separators. The canvas is the
frame of the model's answers (content at ``pad_left = pad_top = 0``); ``extra`` keeps the processor's
input size (after ms-swift's ``--max_pixels``). No image is refused. The numbers come from the live
processor; ``settings_for`` uses meta-llama/Llama-4-Scout-17B-16E-Instruct's (Maverick's are the same).
"""
from __future__ import annotations

import math
import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from ..geometry import ImageGeometry, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import template_memo, tolist

# meta-llama/Llama-4-Scout-17B-16E-Instruct (preprocessor_config.json, processor_config.json).
TILE_SIZE = 336
MAX_PATCHES = 16
PATCH_SIZE = 14
DOWNSAMPLE_RATIO = 4  # int(round(1 / pixel_shuffle_ratio ** 2)), pixel_shuffle_ratio 0.5

_SOURCE = ('no box output format documented (the Llama 4 model card names image grounding as a strength but '
           "documents no coordinate format); ms-swift's Llama4Template keeps Template.norm_bbox='norm1000'")


@dataclass(frozen=True)
class Llama4Settings(PreprocessSettings):
    tile_size: int = TILE_SIZE  # the image processor's size (square)
    max_patches: int = MAX_PATCHES  # the most tiles a canvas holds
    resize_to_max_canvas: bool = False
    patch_size: int = PATCH_SIZE  # the processor's patch_size
    downsample_ratio: int = DOWNSAMPLE_RATIO  # the processor's downsample_ratio (pixel shuffle)

    @property
    def tokens_per_view(self) -> int:
        """``<|patch|>`` tokens of one view (``Llama4Processor.replace_image_token``)."""
        return (self.tile_size // self.patch_size) ** 2 // self.downsample_ratio


# ------------------------------------------------------------------------ arithmetic
# Re-implemented: transformers' functions live in a module that imports torch. The unit tests pin each
# one to transformers' own over thousands of sizes.
@lru_cache(maxsize=16)
def supported_grids(max_patches: int) -> tuple[tuple[int, int], ...]:
    """``(rows, cols)`` of every canvas, in ``find_supported_resolutions``' order (the order ties keep)."""
    by_ratio: dict = defaultdict(list)
    for chunks in range(max_patches, 0, -1):
        for factor in sorted(f for f in range(1, chunks + 1) if chunks % f == 0):
            by_ratio[factor / (chunks // factor)].append((factor, chunks // factor))
    return tuple(grid for grids in by_ratio.values() for grid in grids)


def _f32(value: float) -> float:
    """``value`` rounded to float32. A float64 quotient rounded so equals the float32 quotient of two
    float32 numbers (53 >= 2 * 24 + 2 bits), which is what ``get_best_fit``'s tensors hold."""
    return struct.unpack('f', struct.pack('f', value))[0]


def best_grid(*, width: int, height: int, max_patches: int, tile_size: int,
              resize_to_max_canvas: bool = False) -> tuple[int, int]:
    """``(rows, cols)`` of the canvas ``get_best_fit`` picks for a ``width`` x ``height`` image."""
    grids = supported_grids(max_patches)
    w32, h32 = _f32(width), _f32(height)
    scales = []
    for rows, cols in grids:
        scale_w, scale_h = _f32(_f32(cols * tile_size) / w32), _f32(_f32(rows * tile_size) / h32)
        scales.append(scale_w if scale_h > scale_w else scale_h)
    up = [s for s in scales if s >= 1]
    if up:
        selected = max(up) if resize_to_max_canvas else min(up)
    else:
        selected = max(scales)
    best = None
    for grid, scale in zip(grids, scales, strict=True):
        if scale == selected and (best is None or grid[0] * grid[1] < best[0] * best[1]):  # the first smallest
            best = grid
    return best


def fit_without_distortion(*, width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """``(width, height)`` of ``get_max_res_without_distortion``, each side at least 1 as the processor keeps it."""
    scale_w, scale_h = target_width / width, target_height / height
    if scale_w < scale_h:
        new_w, new_h = target_width, min(math.floor(height * scale_w), target_height)
    else:
        new_w, new_h = min(math.floor(width * scale_h), target_width), target_height
    return max(new_w, 1), max(new_h, 1)


# --------------------------------------------------------------------------- family
@register_family
class Llama4(Family):
    name = 'llama4'
    settings_cls = Llama4Settings
    encoded_keys = ('input_ids', 'pixel_values')
    shape_keys = ('pixel_values',)
    templates = (untrained_spec('llama4', coords_source=_SOURCE, model_type='llama4'),)

    @classmethod
    def settings_from_template(cls, template, settings):
        processor = template.processor
        ip = processor.image_processor
        return replace(settings, tile_size=int(ip.size['height']), max_patches=int(ip.max_patches),
                       resize_to_max_canvas=bool(ip.resize_to_max_canvas), patch_size=int(processor.patch_size),
                       downsample_ratio=int(processor.downsample_ratio))

    @classmethod
    def geometry(cls, settings, *, width: int, height: int, grid: tuple[int, int] | None = None) -> ImageGeometry:
        """The geometry of a ``width`` x ``height`` processor input; ``grid``: the ``(rows, cols)`` an encode
        showed, instead of the one the processor would pick."""
        tile = settings.tile_size
        rows, cols = grid or best_grid(width=width, height=height, max_patches=settings.max_patches, tile_size=tile,
                                       resize_to_max_canvas=settings.resize_to_max_canvas)
        canvas_w, canvas_h = cols * tile, rows * tile
        if not settings.resize_to_max_canvas:  # upscale only until a side reaches one tile
            target_w, target_h = min(max(width, tile), canvas_w), min(max(height, tile), canvas_h)
        else:
            target_w, target_h = canvas_w, canvas_h
        content_w, content_h = fit_without_distortion(width=width, height=height, target_width=target_w,
                                                      target_height=target_h)
        tiles = rows * cols
        views = tiles + 1 if tiles > 1 else tiles
        return ImageGeometry(original_width=width, original_height=height, resized_width=content_w,
                             resized_height=content_h, num_tokens=views * settings.tokens_per_view,
                             tile_cols=cols, tile_rows=rows, num_tiles=views, thumbnail=tiles > 1,
                             canvas_width=canvas_w, canvas_height=canvas_h,
                             global_width=tile if tiles > 1 else None, global_height=tile if tiles > 1 else None,
                             extra=(('processor_input_width', width), ('processor_input_height', height)))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        return fitted(cls.geometry(settings, width=width, height=height), width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        ids = encoded.get('input_ids')
        if ids is None:
            return list(predicted)
        tokens = template_memo(template, 'llama4.image_tokens', lambda: _image_tokens(template.processor))
        blocks = image_blocks(ids, *tokens)
        if len(blocks) != len(predicted):
            return list(predicted)
        settings = template.geo_settings()
        out = []
        for geo, (rows, cols, patches) in zip(predicted, blocks, strict=True):
            if geo is None:
                out.append(geo)
                continue
            if (rows, cols, patches) == (geo.tile_rows, geo.tile_cols, geo.num_tokens):
                out.append(geo)  # the encode agrees with the prediction
                continue
            extra = dict(geo.extra)
            seen = cls.geometry(settings, width=extra['processor_input_width'], height=extra['processor_input_height'],
                                grid=(rows, cols))
            out.append(updated(geo, num_tokens=patches, **{k: getattr(seen, k) for k in (
                'resized_width', 'resized_height', 'tile_cols', 'tile_rows', 'num_tiles', 'thumbnail',
                'canvas_width', 'canvas_height', 'global_width', 'global_height')}))
        return out


def _image_tokens(processor) -> tuple[int, ...]:
    """The ids of ``<|image_start|>``, ``<|image_end|>``, ``<|patch|>``, the x and the y tile separators."""
    convert = processor.tokenizer.convert_tokens_to_ids
    return tuple(convert(t) for t in (processor.start_of_img_token, processor.end_of_img_token,
                                      processor.img_patch_token, processor.tile_token, processor.tile_global_token))


def image_blocks(input_ids: Sequence[int], start: int, end: int, patch: int, x_sep: int,
                 y_sep: int) -> list[tuple[int, int, int]]:
    """``(rows, cols, patch tokens)`` of each ``<|image_start|>`` ... ``<|image_end|>`` block, in order.

    A block with no ``<|tile_y_separator|>`` is one tile (1, 1); otherwise each row ends with one and its
    tiles are split by ``<|tile_x_separator|>``. A block left open (truncated) is not counted.
    """
    ids = tolist(input_ids)
    out, pos = [], 0
    while True:
        try:
            first = ids.index(start, pos)
            last = ids.index(end, first)
        except ValueError:
            return out
        block = ids[first:last]
        rows = block.count(y_sep)
        cols = block.count(x_sep) // rows + 1 if rows else 1
        out.append((rows or 1, cols, block.count(patch)))
        pos = last + 1
