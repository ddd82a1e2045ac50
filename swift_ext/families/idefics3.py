"""Idefics3 (``idefics3``): longest edge to 4 x 364, then 364-pixel tiles plus a global image.

The HF processor decides everything inside ``_encode`` (transformers
``models/idefics3/image_processing_idefics3.py``):

1. ``resize``: the longest edge becomes ``size['longest_edge']`` (1456), up or down, the other
   side ``int(side * scale)`` made even (``_resize_output_size_rescale_to_max_len``), then
   both kept under 4096 (``_resize_output_size_scale_below_upper_bound``);
2. ``resize_for_vision_encoder``: the longer side ceiled to a multiple of
   ``max_image_size['longest_edge']`` (364), the other recomputed from the aspect ratio
   (``int``) and ceiled to a multiple too (the content is stretched a little to fill them);
3. ``split_images``: when that is more than one tile, ``rows x cols`` 364-pixel tiles,
   row-major, then the whole image squashed to 364 x 364 as the global image.
Every tile and the global image cost ``image_seq_len`` (169) ``<image>`` tokens.
No environment variable is read; a row's ``chat_template_kwargs.max_pixels`` feeds ms-swift's
pre-rescale. The encode shows each tile as ``<fake_token_around_image><row_R_col_C>`` +
169 ``<image>``, and the global image as ``<global-img>`` + 169 ``<image>``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from ..cache import BoundedCache
from ..geometry import Clamp, GeometryError, ImageGeometry, check_side, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .encoded import token_spans, tolist

MAX_IMAGE_SIZE = 4096  # transformers' absolute cap on a side after the first resize
IMAGE_TOKEN_ID = 128257  # hard-coded by ms-swift's Idefics3Template (<image>)
_SOURCE = ("no trained box output (Idefics3 has no grounding format); 'norm1000' is ms-swift's "
           'Template.norm_bbox default, which Idefics3Template does not override')
_TAG_RE = re.compile(r'<row_(\d+)_col_(\d+)>|<global-img>')


@dataclass(frozen=True)
class Idefics3Settings(PreprocessSettings):
    longest_edge: int = 4 * 364  # size['longest_edge']
    tile_size: int = 364  # max_image_size['longest_edge']
    do_resize: bool = True
    do_image_splitting: bool = True
    image_seq_len: int = 169  # (364 // 14) ** 2 / 2 ** 2


def rescale_to_max_len(*, height: int, width: int, max_len: int, min_len: int = 1) -> tuple[int, int]:
    """``(height, width)`` of ``_resize_output_size_rescale_to_max_len`` (longest edge to ``max_len``)."""
    aspect_ratio = width / height
    if width >= height:
        width = max_len
        height = int(width / aspect_ratio)
        if height % 2 != 0:
            height += 1
    else:
        height = max_len
        width = int(height * aspect_ratio)
        if width % 2 != 0:
            width += 1
    return max(height, min_len), max(width, min_len)


def scale_below_upper_bound(*, height: int, width: int, max_len: int) -> tuple[int, int]:
    """``(height, width)`` of ``_resize_output_size_scale_below_upper_bound``."""
    aspect_ratio = width / height
    if width >= height and width > max_len:
        width = max_len
        height = int(width / aspect_ratio)
    elif height > width and height > max_len:
        height = max_len
        width = int(height * aspect_ratio)
    return max(height, 1), max(width, 1)


def vision_encoder_size(*, height: int, width: int, tile: int) -> tuple[int, int]:
    """``(height, width)`` ``resize_for_vision_encoder`` resizes to: both sides multiples of ``tile``."""
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = int(width / aspect_ratio)
        height = math.ceil(height / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = int(height * aspect_ratio)
        width = math.ceil(width / tile) * tile
    return height, width


def idefics3_geometry(*, width: int, height: int, settings: Idefics3Settings, name: str = 'image') -> ImageGeometry:
    """Geometry of one image as the Idefics3 processor tiles it (sizes after ms-swift's rescale)."""
    check_side('width', width, name)
    check_side('height', height, name)
    s, tile = settings, settings.tile_size
    h, w = height, width
    if s.do_resize:
        h, w = rescale_to_max_len(height=h, width=w, max_len=s.longest_edge)
        h, w = scale_below_upper_bound(height=h, width=w, max_len=MAX_IMAGE_SIZE)
    if not s.do_image_splitting:  # squashed to one tile
        return ImageGeometry(original_width=width, original_height=height, resized_width=tile,
                             resized_height=tile, num_tokens=s.image_seq_len)
    h, w = vision_encoder_size(height=h, width=w, tile=tile)
    if h <= 0 or w <= 0:
        raise GeometryError(f'{name}: resize_for_vision_encoder gives a zero side ({w}x{h}) for a '
                            f'{width}x{height} image; the processor cannot resize to it.')
    if h <= tile and w <= tile:
        return ImageGeometry(original_width=width, original_height=height, resized_width=w,
                             resized_height=h, num_tokens=s.image_seq_len)
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    return ImageGeometry(original_width=width, original_height=height, resized_width=w, resized_height=h,
                         num_tokens=(rows * cols + 1) * s.image_seq_len, tile_cols=cols, tile_rows=rows,
                         num_tiles=rows * cols + 1, thumbnail=True, global_width=tile, global_height=tile)


def idefics3_clamp(*, width: int, height: int, geo: ImageGeometry, settings: Idefics3Settings) -> Clamp | None:
    """The clamp of the processor's resize: its longest-edge step (the ceil to whole tiles is rounding).

    The longest side is set to ``longest_edge`` (then capped at 4096): ``LONGEST_EDGE`` where that
    shrank it, ``UPSCALE`` where it grew it. Without splitting, the image is squashed to one tile.
    """
    if not settings.do_image_splitting:
        return fit_clamp(width=width, height=height, resized_width=geo.resized_width,
                         resized_height=geo.resized_height)
    if not settings.do_resize:
        return None
    longest, cap = max(width, height), min(settings.longest_edge, MAX_IMAGE_SIZE)
    if longest == cap:
        return None
    return Clamp.LONGEST_EDGE if longest > cap else Clamp.UPSCALE


@register_family
class Idefics3(Family):
    name = 'idefics3'
    video_support = 'ignored'  # Idefics3Template leaves `<video>` in the text and drops the video
    encoded_keys = ('input_ids', 'pixel_values')
    shape_keys = ('pixel_values',)
    settings_cls = Idefics3Settings
    templates = (TemplateSpec('idefics3', 'norm1000', ('bare_list',), coords_source=_SOURCE, model_type='idefics3',
                              boxes_trained=False),)

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        return replace(settings, longest_edge=int(ip.size['longest_edge']),
                       tile_size=int(ip.max_image_size['longest_edge']), do_resize=bool(ip.do_resize),
                       do_image_splitting=bool(ip.do_image_splitting),
                       image_seq_len=int(template.processor.image_seq_len))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = idefics3_geometry(width=width, height=height, settings=settings, name=name)
        return geo, idefics3_clamp(width=width, height=height, geo=geo, settings=settings)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        settings = template.geo_settings()
        views = None if any(geo is None for geo in predicted) else sum(geo.num_tiles for geo in predicted)
        tiles = image_tiles(encoded['input_ids'], decode=_memo_decode(template), seq_len=settings.image_seq_len,
                            expected_views=views)
        if tiles is None or len(tiles) != len(predicted):
            return list(predicted)
        pixel_values = encoded.get('pixel_values')
        if pixel_values is not None and pixel_values.shape[1] != sum(n for n, _, _ in tiles):
            return list(predicted)
        return [None if geo is None else _from_encode(geo, t, settings)
                for geo, t in zip(predicted, tiles, strict=False)]


def _memo_decode(template):
    """The template's ``tokenizer.decode`` remembering its answers: the same few tag windows recur."""
    cache = template.__dict__.setdefault('_geo_decoded', BoundedCache())

    def decode(ids):
        key = tuple(ids)
        text = cache.get(key)
        if text is None:
            text = cache[key] = template.tokenizer.decode(ids)
        return text
    return decode


def image_tiles(input_ids, *, decode, seq_len: int, window: int = 32,
                expected_views: int | None = None) -> list[tuple] | None:
    """Per image in ``input_ids``: (views, rows, cols), from the ``<image>`` runs and their tags.

    Each run of ``seq_len`` image tokens is one view; the text just before it names it
    (``<row_R_col_C>`` for a tile, ``<global-img>`` for the global image, which ends an image).
    None when the runs are not whole views. ``expected_views`` (the predicted count) only speeds
    up finding the runs.
    """
    ids = tolist(input_ids)
    hint = [seq_len] * expected_views if expected_views else None
    out, rows, cols, views, end = [], 0, 0, 0, 0
    for start, length in token_spans(ids, IMAGE_TOKEN_ID, hint):
        if length != seq_len:
            return None
        tags = _TAG_RE.findall(decode(ids[max(end, start - window):start]))
        end, views = start + length, views + 1
        if not tags:
            return None
        row, col = tags[-1]
        if row:  # a tile
            rows, cols = max(rows, int(row)), max(cols, int(col))
            continue
        out.append((views, rows, cols))
        rows, cols, views = 0, 0, 0
    return None if views else out  # views left over: tiles with no global image after them


def _from_encode(geo: ImageGeometry, tiles: tuple, settings: Idefics3Settings) -> ImageGeometry:
    """``geo`` with the views, grid and tokens the encode produced."""
    views, rows, cols = tiles
    tile = settings.tile_size
    tokens = views * settings.image_seq_len
    if rows == 0:
        return updated(geo, num_tokens=tokens, num_tiles=1, tile_cols=None, tile_rows=None, thumbnail=False,
                       global_width=None, global_height=None)
    return updated(geo, num_tokens=tokens, resized_width=cols * tile, resized_height=rows * tile, tile_cols=cols,
                   tile_rows=rows, num_tiles=views, thumbnail=True, global_width=tile, global_height=tile)
