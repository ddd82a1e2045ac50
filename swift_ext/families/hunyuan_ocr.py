"""HunyuanOCR (``hunyuan_ocr``): a smart_resize to multiples of 32 in the image processor, one row break a row.

ms-swift's ``HunYuanVLTemplate._encode`` calls ``processor.image_processor(images=...)`` (transformers'
``HunYuanVLImageProcessor``, tencent/HunyuanOCR's processor as transformers 5.19 ports it) and expands
each image to ``patch_h * (patch_w + 1) + 2`` tokens of id 120120, ``patch_h / patch_w`` =
``image_grid_thw``'s rows / columns // ``merge_size``: a row break after each row, a start and an end
token (``HunYuanVLProcessor.replace_image_token`` counts the same). The size
(``image_processing_hunyuan_vl.smart_resize``; ``swift_ext.geometry.zero_floor_smart_resize``):

1. refused where ``max / min`` side > 200;
2. each side rounded to a multiple of ``patch_size * merge_size`` (32), a side under 16 to 0;
3. over ``max_pixels`` (2048 x 2048) both sides floored after scaling by ``sqrt(h * w / max_pixels)``
   (at least 32); under ``min_pixels`` (512 x 512, a zero side included) ceiled after scaling up.

``image_grid_thw`` = (1, h / 16, w / 16). ms-swift's own pre-rescale (``Template._get_max_pixels``) comes
first; no environment variable reaches the processor.

**ms-swift 4.6.0 cannot encode an image for this template with transformers 5.19**: ``_encode`` ends with
``processor.pad_id``, an attribute of the processor Tencent first published (``pad_id = 120002``) that
transformers' ``HunYuanVLProcessor`` (and its tokenizer) lacks, so every image sample raises
``AttributeError``. Verification is therefore ``published_code``: the arithmetic is pinned to transformers'
processor over thousands of sizes; ``tests/unit/test_family_hunyuan_ocr.py`` pins the failure (it fails
once a release fixes it) and runs the real template with that one attribute supplied, where the recorded
geometry equals the prediction. With it supplied a GRPO's rollout and rewards run (``tests/e2e/test_hunyuan_ocr.py``),
and training stops at a second mismatch: ``_post_encode`` reads ``base_model.model.embed_tokens`` / ``.vit``,
Tencent's first model layout, where transformers' ``HunYuanVLModel`` has ``language_model`` / ``visual``.

Boxes: the spotting task ("Detect and recognize text in the image, and output the text coordinates in a
formatted manner", README of Tencent-Hunyuan/HunyuanOCR) answers ``text(x1,y1),(x2,y2)`` per line, in
0-1000 of the image: box style ``hunyuan_spot``, convention ``norm1000`` (see ``_SOURCE``).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .common import limits_from_processor, zero_floor_geometry
from .encoded import grid_sized, image_grids, predicted_tokens, token_runs

HUNYUAN_PATCH_SIZE = 16
HUNYUAN_MERGE_SIZE = 2
HUNYUAN_MIN_PIXELS = 512 * 512
HUNYUAN_MAX_PIXELS = 2048 * 2048
HUNYUAN_IMAGE_TOKEN_ID = 120120  # HunYuanVLTemplate.image_token_id

_SOURCE = ('Tencent-Hunyuan/HunyuanOCR (commit b138959428e7d592d5e832aee39d91aa60ea0f44): README task "Spotting"; '
           'Hunyuan-OCR-master/utils.py process_spotting_response reads text(x1,y1),(x2,y2) and '
           'denormalize_coordinates maps x * width / 1000, y * height / 1000')


@dataclass(frozen=True)
class HunyuanOCRSettings(PreprocessSettings):
    patch_size: int = HUNYUAN_PATCH_SIZE
    merge_size: int = HUNYUAN_MERGE_SIZE
    min_pixels: int = HUNYUAN_MIN_PIXELS
    max_pixels: int = HUNYUAN_MAX_PIXELS


def hunyuan_tokens(grid_h: int, grid_w: int, merge_size: int = HUNYUAN_MERGE_SIZE) -> int:
    """Tokens of an image of ``grid_h`` x ``grid_w`` patches: a row break a row, a start and an end token.

    Example:
        >>> hunyuan_tokens(32, 48)
        402
    """
    rows, cols = grid_h // merge_size, grid_w // merge_size
    return rows * (cols + 1) + 2


def hunyuan_geometry(settings: HunyuanOCRSettings, *, width: int, height: int, name: str = 'image'):
    """``(ImageGeometry, clamp)`` of a ``width`` x ``height`` processor input.

    Example:
        >>> from swift_ext.settings import default_settings
        >>> geo, clamp = hunyuan_geometry(default_settings('hunyuan_ocr_geo'), width=640, height=480)
        >>> (geo.resized_width, geo.resized_height, geo.grid, geo.num_tokens, clamp)
        (640, 480, (1, 30, 40), 317, None)
    """
    return zero_floor_geometry(settings, width=width, height=height, name=name,
                               tokens=lambda rows, cols: hunyuan_tokens(rows, cols, settings.merge_size))


@register_family
class HunyuanOCR(Family):
    name = 'hunyuan_ocr'
    settings_cls = HunyuanOCRSettings
    encoded_keys = ('input_ids', 'image_grid_thw')
    video_support = 'refused'  # HunYuanVLTemplate.replace_tag asserts media_type == 'image'
    templates = (TemplateSpec('hunyuan_ocr', 'norm1000', ('hunyuan_spot',), coords_source=_SOURCE,
                              verification='published_code'),)

    @classmethod
    def settings_from_template(cls, template, settings):
        return limits_from_processor(template.processor.image_processor, settings)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        return hunyuan_geometry(settings, width=width, height=height, name=name)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        settings = template.geo_settings()
        image_token = getattr(template, 'image_token_id', HUNYUAN_IMAGE_TOKEN_ID)
        runs = token_runs(encoded['input_ids'], image_token, predicted_tokens(predicted))
        # Two images with nothing between them make one run: each image's count then comes from its grid.
        grids = image_grids(encoded, len(predicted), merge_size=settings.merge_size, runs=runs,
                            tokens=lambda t, h, w: hunyuan_tokens(h, w, settings.merge_size))
        return grid_sized(predicted, grids, settings.patch_size)
