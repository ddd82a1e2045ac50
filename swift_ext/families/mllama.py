"""Llama 3.2 Vision (``llama3_2_vision``, transformers' Mllama): tiles of 560 on a canvas, seen through
cross-attention.

The HF image processor decides the geometry inside the template's ``_encode``
(``transformers/models/mllama/image_processing_mllama.py``):

1. ``get_optimal_tiled_canvas``: among the ``rows x cols`` tile arrangements with at most
   ``max_image_tiles`` tiles (4), the canvas the image needs the least upscaling to touch (aspect kept),
   else the least downscaling; ties to the smallest area;
2. ``get_image_size_fit_to_canvas``: the image is resized (aspect kept, floored, a side at least 1) so
   that its limiting side reaches the canvas, a side below the tile size counting as the tile size: a
   small image grows until that side is 560, an image already inside the canvas keeps its size;
3. ``pad``: the content sits at the top-left of the canvas, zeros right and bottom; the canvas is cut
   into ``rows x cols`` 560-pixel tiles, row-major. The encode carries them as ``pixel_values`` of
   ``max_image_tiles`` tiles per image (the unused ones zero), with ``aspect_ratio_ids`` (the
   arrangement's 1-based index among ``get_all_supported_aspect_ratios``) and ``aspect_ratio_mask``.

What the model sees: Mllama is not an early-fusion model. The text holds one ``<|image|>`` token per
image, whatever its size; the vision encoder turns each tile into ``(560 / 14) ** 2`` patches + 1 class
token (1601), and the text tokens after ``<|image|>`` cross-attend to them, the padding tiles masked
out (``cross_attention_mask``). ``num_tokens`` is therefore **the vision positions an image's text
attends to, ``tiles x 1601``**, not image tokens in the sequence: it measures how much of the image the
model gets, as for other families, but it does not add to the sequence length (``--max_length``
counts one token per image). The canvas is the frame of the model's answers (``canvas_*``, content at
``pad_left = pad_top = 0``); ``extra`` keeps the ``aspect_ratio_id`` and the processor's input size
(after ms-swift's ``--max_pixels``). No image is refused (a side floors to at least 1). The numbers
come from the live processor and the model config (``vision_config.image_size`` / ``patch_size``);
``settings_for`` uses meta-llama/Llama-3.2-11B-Vision-Instruct's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from ..geometry import ImageGeometry, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import encoded_rows

# meta-llama/Llama-3.2-11B-Vision-Instruct (preprocessor_config.json, config.json vision_config); the
# 90B and base checkpoints ms-swift lists share them.
TILE_SIZE = 560
MAX_IMAGE_TILES = 4
PATCH_SIZE = 14

_SOURCE = ('no trained box output documented (Llama 3.2 Vision model card and prompt-format docs); '
           "ms-swift's Llama3_2VisionTemplate keeps Template.norm_bbox='norm1000'")


@dataclass(frozen=True)
class MllamaSettings(PreprocessSettings):
    tile_size: int = TILE_SIZE  # the image processor's size (square)
    max_image_tiles: int = MAX_IMAGE_TILES
    vision_image_size: int = TILE_SIZE  # vision_config.image_size: the tile the encoder patches
    patch_size: int = PATCH_SIZE  # vision_config.patch_size

    @property
    def tokens_per_tile(self) -> int:
        """Vision positions one tile gives: its patches and one class token (``MllamaVisionModel.num_patches``)."""
        return (self.vision_image_size // self.patch_size) ** 2 + 1


# ------------------------------------------------------------------------ arithmetic
# Re-implemented: transformers' functions live in a module that imports torch. The unit tests pin each
# one to transformers' own over thousands of sizes.
@lru_cache(maxsize=16)
def supported_aspect_ratios(max_image_tiles: int) -> tuple[tuple[int, int], ...]:
    """The ``(rows, cols)`` arrangements in ``get_all_supported_aspect_ratios``' order (ids count from 1)."""
    return tuple((a, b) for a in range(1, max_image_tiles + 1) for b in range(1, max_image_tiles + 1)
                 if a * b <= max_image_tiles)


def optimal_canvas(*, width: int, height: int, max_image_tiles: int, tile_size: int) -> tuple[int, int]:
    """``(rows, cols)`` of tiles ``get_optimal_tiled_canvas`` picks for a ``width`` x ``height`` image."""
    arrangements = supported_aspect_ratios(max_image_tiles)
    scales = []
    for rows, cols in arrangements:
        scale_h, scale_w = rows * tile_size / height, cols * tile_size / width
        scales.append(scale_h if scale_w > scale_h else scale_w)
    up = [s for s in scales if s >= 1]
    selected = min(up) if up else max(scales)
    best = None
    for (rows, cols), scale in zip(arrangements, scales, strict=True):
        if scale == selected and (best is None or rows * cols < best[0] * best[1]):  # the first smallest area
            best = (rows, cols)
    return best


def fit_to_canvas(*, width: int, height: int, canvas_width: int, canvas_height: int,
                  tile_size: int) -> tuple[int, int]:
    """``(width, height)`` of the content as ``get_image_size_fit_to_canvas`` gives it."""
    target_width = min(max(width, tile_size), canvas_width)
    target_height = min(max(height, tile_size), canvas_height)
    scale_h, scale_w = target_height / height, target_width / width
    if scale_w < scale_h:
        return target_width, min(math.floor(height * scale_w) or 1, target_height)
    return min(math.floor(width * scale_h) or 1, target_width), target_height


# --------------------------------------------------------------------------- family
@register_family
class Mllama(Family):
    name = 'mllama'
    settings_cls = MllamaSettings
    encoded_keys = ('aspect_ratio_ids', 'aspect_ratio_mask', 'pixel_values')
    shape_keys = ('pixel_values',)
    templates = (untrained_spec('llama3_2_vision', coords_source=_SOURCE, model_type='llama3_2_vision'),)
    collate_rule = ("ms-swift's Llama3_2VisionTemplate concatenates the rows' pixel_values (1 x images x tiles): a "
                    "batch cannot mix rows with different numbers of images ('Sizes of tensors must match')")

    @classmethod
    def collate_shape(cls, settings, geometries):
        return f'{len(geometries)} image' + ('s' if len(geometries) > 1 else '') if geometries else None

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        vision = getattr(getattr(template, 'config', None), 'vision_config', None)
        return replace(settings, tile_size=int(ip.size['height']), max_image_tiles=int(ip.max_image_tiles),
                       vision_image_size=int(getattr(vision, 'image_size', settings.vision_image_size)),
                       patch_size=int(getattr(vision, 'patch_size', settings.patch_size)))

    @classmethod
    def geometry(cls, settings, *, width: int, height: int, grid: tuple[int, int] | None = None) -> ImageGeometry:
        """The geometry of a ``width`` x ``height`` processor input; ``grid``: the ``(rows, cols)`` an encode
        showed, instead of the one the processor would pick."""
        tile = settings.tile_size
        rows, cols = grid or optimal_canvas(width=width, height=height, max_image_tiles=settings.max_image_tiles,
                                            tile_size=tile)
        content_w, content_h = fit_to_canvas(width=width, height=height, canvas_width=cols * tile,
                                             canvas_height=rows * tile, tile_size=tile)
        ratios = supported_aspect_ratios(settings.max_image_tiles)
        ratio_id = ratios.index((rows, cols)) + 1 if (rows, cols) in ratios else 0
        return ImageGeometry(original_width=width, original_height=height, resized_width=content_w,
                             resized_height=content_h, num_tokens=rows * cols * settings.tokens_per_tile,
                             tile_cols=cols, tile_rows=rows, num_tiles=rows * cols, canvas_width=cols * tile,
                             canvas_height=rows * tile,
                             extra=(('aspect_ratio_id', ratio_id), ('processor_input_width', width),
                                    ('processor_input_height', height)))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        return fitted(cls.geometry(settings, width=width, height=height), width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        ids, mask = encoded_rows(encoded, 'aspect_ratio_ids'), encoded_rows(encoded, 'aspect_ratio_mask')
        pixels = encoded.get('pixel_values')
        if ids is None or mask is None or pixels is None or len(ids[0]) != len(predicted):
            return list(predicted)
        # The tile size and tile cap the processor really used: the pixels' side, the mask's length.
        seen = template.geo_settings()
        seen = replace(seen, tile_size=int(pixels.shape[-1]), max_image_tiles=len(mask[0][0]))
        ratios = supported_aspect_ratios(seen.max_image_tiles)
        out = []
        for geo, ratio_id, tiles in zip(predicted, ids[0], mask[0], strict=True):
            if geo is None or not 1 <= ratio_id <= len(ratios):
                out.append(geo)
                continue
            grid = ratios[ratio_id - 1]
            agrees = grid == (geo.tile_rows, geo.tile_cols) and sum(tiles) == geo.num_tiles
            agrees = agrees and seen.tile_size * grid[1] == geo.canvas_width
            if agrees and geo.extra[0] == ('aspect_ratio_id', ratio_id):
                out.append(geo)  # the encode agrees with the prediction
                continue
            extra = dict(geo.extra)
            real = cls.geometry(seen, width=extra['processor_input_width'], height=extra['processor_input_height'],
                                grid=grid)
            out.append(updated(geo, **{k: getattr(real, k) for k in (
                'resized_width', 'resized_height', 'num_tokens', 'tile_cols', 'tile_rows', 'num_tiles',
                'canvas_width', 'canvas_height', 'extra')}))
        return out
