"""LLaVA-NeXT through transformers (``Llava1_6HfTemplate``): anyres tiling on a padded pinpoint canvas.

The HF processor decides the geometry inside the template's ``_encode``
(``transformers/models/llava_next/image_processing_llava_next.py``):

1. ``select_best_resolution``: among ``image_grid_pinpoints`` (given as (height, width)), the canvas
   that keeps the most of the image's pixels (``int()`` of the scaled sides), ties to the least waste;
2. ``get_patch_output_size``: an aspect-kept resize into that canvas (one side = the canvas side, the
   other ``min(ceil(side * scale), canvas side)``), padded centred (``divmod(diff, 2)``, the odd pixel
   right / bottom);
3. the canvas is cut into ``tile_size`` tiles, row-major, after a global view (the whole image
   squashed to the view size, not aspect-kept): ``pixel_values`` holds 1 + tiles views, and
   ``image_sizes`` the processor's input (height, width).

ms-swift then expands each ``<image>`` to ``processor._get_number_of_features(h, w, view_h, view_w)``
tokens (``processing_llava_next.py``): the feature grid of the canvas with the padded rows / columns
cut off, one newline token per feature row, and the global view's patches (+ CLS, from
``num_additional_image_tokens``); minus one when ``vision_feature_select_strategy == 'default'``
(the CLS is dropped). Every number comes from the live processor; ``settings_for`` uses
llava-hf/llava-v1.6-mistral-7b-hf's. ms-swift's ``--max_pixels`` pre-rescale comes first.

LLaVA-OneVision (``llava_onevision.py``) shares this arithmetic with its own token rule.
Coordinates: the model's frame is the padded canvas (``ImageGeometry.canvas_*``, ``pad_*``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..geometry import GeometryError, ImageGeometry, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .encoded import encoded_rows, predicted_tokens, token_runs

# llava-hf/llava-v1.6-mistral-7b-hf (preprocessor_config.json, processor_config.json); the other
# LLaVA-NeXT-hf checkpoints ms-swift lists use the same five pinpoints and 336-pixel CLIP views.
NEXT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))  # (height, width)
NEXT_VIEW_SIZE = 336
NEXT_PATCH_SIZE = 14

_NEXT_SOURCE = ('LLaVA-1.5/NeXT grounding data (llava_v1_5_mix665k) writes [x1, y1, x2, y2] as 0-1 fractions '
                'of the image padded to a square (haotian-liu/LLaVA#606); swift-ext reads them on the anyres '
                'padded canvas, the same frame whenever the chosen pinpoint is square (aspect ratio < 2:1 on '
                "the default pinpoints). ms-swift's own grounding data for this template is 0-1000 "
                "(Template.norm_bbox='norm1000', unpadded)")
_BOX = ('bare_list',)


@dataclass(frozen=True)
class AnyresSettings(PreprocessSettings):
    """What LLaVA-NeXT and LLaVA-OneVision processors share."""

    image_grid_pinpoints: tuple[tuple[int, int], ...] = NEXT_PINPOINTS  # (height, width) pairs
    tile_size: int = NEXT_VIEW_SIZE  # the side the canvas is cut at (crop_size, else size)
    # Each view in pixel_values after the processor's resize / centre crop; ms-swift counts tokens from it.
    view_height: int = NEXT_VIEW_SIZE
    view_width: int = NEXT_VIEW_SIZE
    vision_feature_select_strategy: str = 'default'


@dataclass(frozen=True)
class LlavaNextSettings(AnyresSettings):
    patch_size: int = NEXT_PATCH_SIZE
    num_additional_image_tokens: int = 1  # the CLIP CLS token


# ------------------------------------------------------------------------ arithmetic
# Re-implemented (transformers' functions live in modules that import torch); the unit tests
# pin each one to transformers' own function over thousands of sizes.
def best_pinpoint(*, width: int, height: int, pinpoints: Sequence[Sequence[int]]) -> tuple[int, int]:
    """``(width, height)`` of the canvas ``select_best_resolution`` picks; pinpoints are (height, width)."""
    best, max_effective, min_wasted = None, 0, float('inf')
    for pin_height, pin_width in pinpoints:
        scale = min(pin_width / width, pin_height / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = pin_width * pin_height - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            best, max_effective, min_wasted = (pin_width, pin_height), effective, wasted
    if best is None:  # only with no pinpoints at all: the processor then fails on None
        raise GeometryError(f'{width}x{height} image: image_grid_pinpoints must not be empty, got {list(pinpoints)!r}.')
    return best


def fit_in_canvas(*, width: int, height: int, canvas_width: int, canvas_height: int) -> tuple[int, int]:
    """``(width, height)`` of the aspect-kept resize into the canvas (``get_patch_output_size``)."""
    scale_w = canvas_width / width
    scale_h = canvas_height / height
    if scale_w < scale_h:
        return canvas_width, min(math.ceil(height * scale_w), canvas_height)
    return min(math.ceil(width * scale_h), canvas_width), canvas_height


def unpadded_grid(*, width: int, height: int, patches_width: int, patches_height: int, scale_width: int,
                  scale_height: int, max_num_patches: int | None = None) -> tuple[int, int, int, int]:
    """``(cols, rows, unpadded, newlines)`` of the canvas feature grid (``_get_unpadded_features``).

    ``max_num_patches``: OneVision's ``anyres_max_N``; a grid over N views (by more than 10%)
    is shrunk by the ratio, as its processor does.
    """
    current_height = patches_height * scale_height
    current_width = patches_width * scale_width
    if width / height > current_width / current_height:
        new_height = int(round(height * (current_width / width), 7))
        current_height -= (current_height - new_height) // 2 * 2
    else:
        new_width = int(round(width * (current_height / height), 7))
        current_width -= (current_width - new_width) // 2 * 2
    rows, cols = current_height, current_width
    if max_num_patches is not None:
        ratio = math.sqrt(current_height * current_width / (max_num_patches * patches_height ** 2))
        if ratio > 1.1:
            rows, cols = int(current_height // ratio), int(current_width // ratio)
    return cols, rows, rows * cols, rows


def anyres_layout(*, width: int, height: int, settings: AnyresSettings, name: str = 'image') -> dict:
    """Canvas, content size, padding and tile grid of a ``width`` x ``height`` processor input."""
    if width <= 0 or height <= 0:
        raise GeometryError(f'{name}: image sides must be positive, got {width}x{height}.')
    canvas_w, canvas_h = best_pinpoint(width=width, height=height, pinpoints=settings.image_grid_pinpoints)
    content_w, content_h = fit_in_canvas(width=width, height=height, canvas_width=canvas_w, canvas_height=canvas_h)
    tile = settings.tile_size
    return {'canvas_width': canvas_w, 'canvas_height': canvas_h, 'resized_width': content_w,
            'resized_height': content_h, 'pad_left': (canvas_w - content_w) // 2,
            'pad_top': (canvas_h - content_h) // 2, 'tile_cols': -(-canvas_w // tile),
            'tile_rows': -(-canvas_h // tile)}


# --------------------------------------------------------------------------- family
@register_family
class LlavaNext(Family):
    name = 'llava_next'
    video_support = 'refused'  # LlavaHfTemplate.replace_tag asserts media_type == 'image' (OneVision too)
    encoded_keys = ('input_ids', 'image_sizes')
    settings_cls = LlavaNextSettings
    templates = tuple(
        TemplateSpec(parent, 'norm1', _BOX, coords_source=_NEXT_SOURCE,
                     model_type='llava1_6_mistral_hf' if parent == 'llava1_6_mistral_hf' else None)
        for parent in ('llava1_6_mistral_hf', 'llava1_6_vicuna_hf', 'llava1_6_yi_hf', 'llama3_llava_next_hf',
                       'llava_next_qwen_hf'))
    collate_rule = ("ms-swift's Llava1_6HfTemplate squeezes a 1-image row's pixel_values to 4-D (views) and keeps "
                    "a row of 2+ images 5-D (images x views, padded to the row's most views), then concatenates: "
                    "a batch cannot mix 1-image rows with 2+-image rows, nor 2+-image rows whose most views differ "
                    "('Tensors must have same number of dimensions: got 4 and 5')")

    @classmethod
    def collate_shape(cls, settings, geometries):
        if len(geometries) < 2:
            return '1 image (4-D pixel_values)' if geometries else None
        return f'2+ images of at most {max(g.num_tiles for g in geometries)} views (5-D pixel_values)'

    # --- what differs between NeXT and OneVision --------------------------------------
    @classmethod
    def base_grid(cls, settings) -> tuple[int, int, int]:
        """``(patches_width, patches_height, base tokens)`` of one view."""
        pw, ph = settings.view_width // settings.patch_size, settings.view_height // settings.patch_size
        return pw, ph, pw * ph + settings.num_additional_image_tokens

    @classmethod
    def max_num_patches(cls, settings, name: str) -> int | None:
        return None

    @classmethod
    def dropped_tokens(cls, settings) -> int:
        # LlavaHfTemplate._encode drops the CLS feature under the 'default' strategy.
        return 1 if settings.vision_feature_select_strategy == 'default' else 0

    @classmethod
    def image_token_id(cls, template) -> int:
        return template.image_token_index  # LlavaHfTemplate's own lookup of processor.image_token

    @classmethod
    def processor_settings(cls, processor) -> dict:
        return {'patch_size': int(processor.patch_size),
                'num_additional_image_tokens': int(processor.num_additional_image_tokens or 0)}

    # --- settings ---------------------------------------------------------------------
    @classmethod
    def settings_from_template(cls, template, settings):
        processor = template.processor
        ip = processor.image_processor
        tile, view_h, view_w = view_sizes(ip)
        return replace(settings, image_grid_pinpoints=tuple((int(h), int(w)) for h, w in ip.image_grid_pinpoints),
                       tile_size=tile, view_height=view_h, view_width=view_w,
                       vision_feature_select_strategy=str(processor.vision_feature_select_strategy),
                       **cls.processor_settings(processor))

    # --- prediction -------------------------------------------------------------------
    @classmethod
    def geometry(cls, settings, *, width: int, height: int, original_width: int, original_height: int,
                 name: str) -> ImageGeometry:
        """The geometry of a ``width`` x ``height`` processor input from an original-size file."""
        layout = anyres_layout(width=width, height=height, settings=settings, name=name)
        pw, ph, base = cls.base_grid(settings)
        cols, rows, unpadded, newlines = unpadded_grid(
            width=width, height=height, patches_width=pw, patches_height=ph,
            scale_width=layout['canvas_width'] // settings.view_width,
            scale_height=layout['canvas_height'] // settings.view_height,
            max_num_patches=cls.max_num_patches(settings, name))
        tiles = layout['tile_cols'] * layout['tile_rows']
        return ImageGeometry(
            original_width=original_width, original_height=original_height, **layout,
            num_tokens=unpadded + newlines + base - cls.dropped_tokens(settings), num_tiles=tiles + 1,
            thumbnail=True, global_width=settings.view_width, global_height=settings.view_height,
            extra=(('pinpoint_width', layout['canvas_width']), ('pinpoint_height', layout['canvas_height']),
                   ('feature_cols', cols), ('feature_rows', rows), ('base_tokens', base)))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = cls.geometry(settings, width=width, height=height, original_width=width, original_height=height,
                           name=name)
        # Every image is resized (aspect kept) to touch its pinpoint canvas: shrunk or grown.
        return fitted(geo, width=width, height=height)

    # --- what the encode shows ----------------------------------------------------------
    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        # The model reads only image_sizes to know an image's views: get_image_features keeps the first
        # image_size_to_num_patches(image_sizes[i]) of pixel_values[i] (the rest is the batch's padding),
        # so the views it sees follow from the size the encode returned, as the canvas does.
        sizes = encoded_rows(encoded, 'image_sizes')
        if sizes is None:
            return list(predicted)
        runs = token_runs(encoded['input_ids'], cls.image_token_id(template), predicted_tokens(predicted))
        if not len(runs) == len(sizes) == len(predicted):
            return list(predicted)
        settings, memo = template.geo_settings(), template.geo_memo()
        out: list[ImageGeometry | None] = []
        for geo, (h, w), tokens, entry in zip(predicted, sizes, runs, entries, strict=False):
            if geo is None:
                out.append(None)
                continue
            # The canvas of the size the processor really got, with the tokens the template really put in.
            key = ('llava_next.seen', int(w), int(h), geo.original_width, geo.original_height)
            seen = memo.get(key)
            if seen is None:
                seen = memo[key] = cls.geometry(settings, width=int(w), height=int(h), name=entry.name,
                                                original_width=geo.original_width, original_height=geo.original_height)
            out.append(updated(seen, num_tokens=tokens))
        return out


def view_sizes(image_processor: Any) -> tuple[int, int, int]:
    """``(tile_size, view_height, view_width)`` as the processor's ``_preprocess`` uses them.

    The canvas is cut at ``crop_size.height`` (else ``size.height``, else ``size.shortest_edge``);
    every view is then resized to ``size`` and centre-cropped to ``crop_size`` where enabled.
    """
    size, crop = image_processor.size, image_processor.crop_size
    if crop is not None and crop.get('height'):
        tile = int(crop['height'])
    elif size.get('height'):
        tile = int(size['height'])
    else:
        tile = int(size['shortest_edge'])
    view_h = view_w = tile
    if image_processor.do_resize:
        if size.get('height') and size.get('width'):
            view_h, view_w = int(size['height']), int(size['width'])
        elif size.get('shortest_edge'):  # a square view resized by its shortest edge
            view_h = view_w = int(size['shortest_edge'])
    if image_processor.do_center_crop and crop is not None and crop.get('height'):
        view_h, view_w = int(crop['height']), int(crop['width'])
    return tile, view_h, view_w
