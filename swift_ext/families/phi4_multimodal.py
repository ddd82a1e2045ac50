"""Phi-4-multimodal (``phi4_multimodal``): dynamic-HD crops of 448 on a padded canvas, plus a global view.

ms-swift 4.6 loads this model's processor from its hub repository (remote code,
microsoft/Phi-4-multimodal-instruct ``processing_phi4mm.py``: ``Phi4MMProcessor``; the loader edits its
``audio_processor`` and the template asks it for ``<|endoftext10|>`` runs, which transformers' own
``Phi4MultimodalProcessor`` does not give). The image arithmetic of that processor
(``Phi4MMImageProcessor.dynamic_preprocess``) was ported verbatim into transformers as
``Phi4MultimodalImageProcessor.dynamic_preprocess``; that installed port is what the tests pin this
module to (thousands of sizes through its own functions, the full processor on tens):

1. ``ceil(w / 448) x ceil(h / 448)`` crops if that is at most ``dynamic_hd`` (36); otherwise the
   ``(cols, rows)`` of at most 36 crops whose ratio is closest to the image's (ties to the later ratio
   when the image covers more than half of it), the ratios visited by area;
2. the image is resized (aspect kept, ``int()``) until one side fills the ``448 cols x 448 rows``
   canvas, padded white right and bottom; the canvas is cut into 448-pixel crops, row-major, after a
   global view (the padded canvas squashed to 448 x 448); ``image_sizes`` is the canvas (h, w);
3. a 32 x 32 patch mask per crop marks the padding (``floor(pad / 14)`` columns / rows); every other
   row and column of it is kept (2 x 2 merge), so an image costs ``256 + 1 + 16 + r * (c + 1)``
   tokens, ``r x c`` the kept mask (its ``+1``: a newline per row; 256 + 16: the global view and its
   newlines; 1: the separator): ``num_img_tokens``, written as that many ``<|endoftext10|>``.

Refused where a resized side falls under 10 pixels (``ValueError: the aspect ratio is very extreme``;
the hub processor asserts on an all-padding mask first, only possible then too). The canvas is the
frame of the model's answers (content at ``pad_left = pad_top = 0``); ``extra`` keeps the processor's
input size (after ms-swift's ``--max_pixels``). ``settings_for`` uses
microsoft/Phi-4-multimodal-instruct's ``dynamic_hd`` 36; 448 and 14 are constants of that processor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from ..geometry import GeometryError, ImageGeometry, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import encoded_rows

CROP_SIZE = 448  # dyhd_base_resolution
PATCH_SIZE = 14
DYNAMIC_HD = 36  # microsoft/Phi-4-multimodal-instruct preprocessor_config.json
MIN_SIDE = 10  # under it the processor refuses the image

_SOURCE = ('no trained box output documented (Phi-4-multimodal-instruct model card); '
           "ms-swift's Phi4MMTemplate keeps Template.norm_bbox='norm1000'")


@dataclass(frozen=True)
class Phi4MultimodalSettings(PreprocessSettings):
    crop_size: int = CROP_SIZE
    patch_size: int = PATCH_SIZE
    dynamic_hd: int = DYNAMIC_HD  # the most crops

    @property
    def global_tokens(self) -> int:
        """The global view's tokens, its newlines and the separator (256 + 16 + 1 at 448 / 14)."""
        side = -(-(self.crop_size // self.patch_size) // 2)
        return side * side + side + 1


# ------------------------------------------------------------------------ arithmetic
@lru_cache(maxsize=16)
def target_ratios(max_num: int, min_num: int = 1) -> tuple[tuple[int, int], ...]:
    """``(cols, rows)`` candidates in ``dynamic_preprocess``' order: a set of pairs sorted by area.

    The set is built exactly as the processor builds it (same elements, same insertion order), so its
    iteration order, which decides ties of equal area, is the processor's.
    """
    ratios = {(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
              if min_num <= i * j <= max_num}
    return tuple(sorted(ratios, key=lambda x: x[0] * x[1]))


def closest_ratio(*, width: int, height: int, max_num: int, crop_size: int) -> tuple[int, int]:
    """``(cols, rows)`` of ``find_closest_aspect_ratio`` over ``target_ratios(max_num)``."""
    aspect, area = width / height, width * height
    best_diff, best = float('inf'), (1, 1)
    for ratio in target_ratios(max_num):
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * crop_size * crop_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def hd_grid(*, width: int, height: int, max_num: int, crop_size: int) -> tuple[int, int]:
    """``(cols, rows)`` of crops ``dynamic_preprocess`` cuts a ``width`` x ``height`` image into."""
    cols, rows = math.ceil(width / float(crop_size)), math.ceil(height / float(crop_size))
    if cols * rows > max_num:
        return closest_ratio(width=width, height=height, max_num=max_num, crop_size=crop_size)
    return cols, rows


def hd_content(*, width: int, height: int, cols: int, rows: int, crop_size: int) -> tuple[int, int]:
    """``(width, height)`` of the image resized into the ``cols x rows`` canvas (``new_size``)."""
    target_w, target_h = crop_size * cols, crop_size * rows
    ratio_w, ratio_h = target_w / width, target_h / height
    if ratio_w < ratio_h:
        return target_w, int(height * ratio_w)
    return int(width * ratio_h), target_h


def hd_mask(*, content_w: int, content_h: int, cols: int, rows: int, crop_size: int,
            patch_size: int) -> tuple[int, int]:
    """``(columns, rows)`` of the canvas' patch mask left unmasked: all but ``floor(pad / patch)`` of the padding."""
    mask = crop_size // patch_size
    valid = []
    for content, count in ((content_w, cols), (content_h, rows)):
        pad = crop_size * count - content
        valid.append(mask * count - (pad // patch_size if pad >= patch_size else 0))
    return valid[0], valid[1]


def hd_tokens(*, content_w: int, content_h: int, cols: int, rows: int, settings: Phi4MultimodalSettings) -> int:
    """``num_img_tokens``: the kept (every other) unmasked rows and columns, a newline a row, and the global view."""
    valid_cols, valid_rows = hd_mask(content_w=content_w, content_h=content_h, cols=cols, rows=rows,
                                     crop_size=settings.crop_size, patch_size=settings.patch_size)
    kept_cols, kept_rows = -(-valid_cols // 2), -(-valid_rows // 2)
    return settings.global_tokens + kept_rows * (kept_cols + 1)


# --------------------------------------------------------------------------- family
@register_family
class Phi4Multimodal(Family):
    name = 'phi4_multimodal'
    settings_cls = Phi4MultimodalSettings
    encoded_keys = ('image_sizes', 'num_img_tokens')
    templates = (untrained_spec('phi4_multimodal', coords_source=_SOURCE, model_type='phi4_multimodal',
                                verification='published_code'),)
    collate_rule = ("ms-swift's Phi4MMTemplate concatenates the rows' input_image_embeds, each padded to its row's "
                    "most crops (the global view included): a batch cannot mix rows whose crop counts differ")

    @classmethod
    def collate_shape(cls, settings, geometries):
        return f'{max(g.num_tiles for g in geometries)} crops per image' if geometries else None

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        size = getattr(ip, 'size', None)  # the hub processor has none: 448 is a constant there
        return replace(settings, dynamic_hd=int(ip.dynamic_hd),
                       crop_size=int(size['height']) if size else settings.crop_size,
                       patch_size=int(getattr(ip, 'patch_size', None) or settings.patch_size))

    @classmethod
    def geometry(cls, settings, *, width: int, height: int, name: str = 'image',
                 grid: tuple[int, int] | None = None) -> ImageGeometry:
        """The geometry of a ``width`` x ``height`` processor input; ``grid``: the ``(cols, rows)`` an encode
        showed, instead of the one the processor would pick."""
        crop = settings.crop_size
        cols, rows = grid or hd_grid(width=width, height=height, max_num=settings.dynamic_hd, crop_size=crop)
        content_w, content_h = hd_content(width=width, height=height, cols=cols, rows=rows, crop_size=crop)
        if min(content_w, content_h) < MIN_SIDE:
            raise GeometryError(f'{name}: fitting {width}x{height} into {cols}x{rows} crops of {crop} leaves '
                                f'{content_w}x{content_h}, a side under {MIN_SIDE} pixels; the processor refuses it '
                                '("the aspect ratio is very extreme").')
        tokens = hd_tokens(content_w=content_w, content_h=content_h, cols=cols, rows=rows, settings=settings)
        return ImageGeometry(original_width=width, original_height=height, resized_width=content_w,
                             resized_height=content_h, num_tokens=tokens, tile_cols=cols, tile_rows=rows,
                             num_tiles=cols * rows + 1, thumbnail=True, canvas_width=cols * crop,
                             canvas_height=rows * crop, global_width=crop, global_height=crop,
                             extra=(('processor_input_width', width), ('processor_input_height', height)))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = cls.geometry(settings, width=width, height=height, name=name)
        return fitted(geo, width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        # The processor's own canvas (h, w) and token count per image: the template writes exactly that many
        # <|endoftext10|> (adjacent images make one run of them, so the runs alone would not say).
        sizes, tokens = encoded_rows(encoded, 'image_sizes'), encoded_rows(encoded, 'num_img_tokens')
        if sizes is None or tokens is None or not len(sizes) == len(tokens) == len(predicted):
            return list(predicted)
        settings = template.geo_settings()
        out = []
        for geo, (canvas_h, canvas_w), count in zip(predicted, sizes, tokens, strict=True):
            canvas_w, canvas_h, count = int(canvas_w), int(canvas_h), int(count)
            if geo is None or (canvas_w, canvas_h, count) == (geo.canvas_width, geo.canvas_height, geo.num_tokens):
                out.append(geo)  # the encode agrees with the prediction (or says nothing of this image)
                continue
            extra = dict(geo.extra)
            crop = settings.crop_size
            seen = cls.geometry(settings, width=extra['processor_input_width'], height=extra['processor_input_height'],
                                grid=(canvas_w // crop, canvas_h // crop))
            out.append(updated(geo, num_tokens=count, **{k: getattr(seen, k) for k in (
                'resized_width', 'resized_height', 'tile_cols', 'tile_rows', 'num_tiles', 'canvas_width',
                'canvas_height')}))
        return out
