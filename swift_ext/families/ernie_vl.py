"""ERNIE-4.5-VL (``ernie_vl``, ``ernie_vl_thinking``): a Qwen2-VL-style smart_resize (factor 28) in the processor.

ms-swift's ``ERNIE_VLTemplate._encode`` calls the checkpoint's processor once per sample on
``'\\n'.join(['<|IMAGE_START|><|image@placeholder|><|IMAGE_END|>'] * n)`` with the images, splices the
returned ``input_ids`` in place of each ``<|IMAGE_PLACEHOLDER|>`` and reads ``token_type_ids``,
``position_ids``, ``images``, ``grid_thw`` and ``image_type_ids``: the API of ``Ernie4_5_VLProcessor``,
which baidu/ERNIE-4.5-VL-28B-A3B-PT (and -Thinking) ship as remote code. transformers 5.19's port
(``transformers/models/ernie4_5_vl_moe``) returns ``pixel_values`` / ``image_grid_thw`` instead, so the
template cannot encode with it. Both size an image with the same ``smart_resize``
(``image_processing_pil_ernie4_5_vl_moe.smart_resize``; ``swift_ext.geometry.zero_floor_smart_resize``):

1. refused where ``max / min`` side > 200;
2. each side rounded to a multiple of ``patch_size * merge_size`` (28), a side under 14 to 0;
3. over ``max_pixels`` (28 x 28 x 6177) both sides floored after scaling by ``sqrt(h * w / max_pixels)``
   (at least 28); under ``min_pixels`` (56 x 56, a zero side included) ceiled after scaling up.

``grid_thw`` = (1, h / 14, w / 14); the image's ``<|IMAGE_PLACEHOLDER|>`` run is ``h * w / 14**2 // 4``
tokens, between ``<|IMAGE_START|>`` and ``<|IMAGE_END|>``. ms-swift's own pre-rescale
(``Template._get_max_pixels``: a row's ``max_pixels``, else ``--max_pixels``) comes first; no
environment variable reaches the processor.

Verification: ``published_code``. The arithmetic is pinned by ``tests/unit/test_family_ernie_vl.py`` to
transformers' port over thousands of sizes and to its image processor on real images; the remote
processor's own ``smart_resize`` and defaults (``min_pixels`` 56 x 56, ``max_pixels`` 6177 x 28 x 28,
patch 14, merge 2) are the port's, as read in the published processing code (``Ernie4_5_VLProcessor``,
``Ernie4_5_VLImageProcessor``) through the code search, which gave no repository address to cite: it
is not vendored. Its processor counts tokens with its own ``image_min_pixels`` / ``image_max_pixels``
(the same defaults); ``actual`` reads the token runs the encode really holds.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .common import limits_from_processor, zero_floor_geometry
from .encoded import grid_sized, image_grids, predicted_tokens, token_id, token_runs

ERNIE_PATCH_SIZE = 14
ERNIE_MERGE_SIZE = 2
ERNIE_MIN_PIXELS = 56 * 56
ERNIE_MAX_PIXELS = 28 * 28 * 6177

_SOURCE = ('no box output format documented on the ERNIE-4.5-VL model cards (the -Thinking card names '
           "grounding, not how boxes are written); ms-swift keeps Template.norm_bbox='norm1000' for "
           'ERNIE_VLTemplate')


@dataclass(frozen=True)
class ErnieVLSettings(PreprocessSettings):
    patch_size: int = ERNIE_PATCH_SIZE
    merge_size: int = ERNIE_MERGE_SIZE
    min_pixels: int = ERNIE_MIN_PIXELS
    max_pixels: int = ERNIE_MAX_PIXELS


def ernie_geometry(settings: ErnieVLSettings, *, width: int, height: int, name: str = 'image'):
    """``(ImageGeometry, clamp)`` of a ``width`` x ``height`` processor input.

    Example:
        >>> from swift_ext.settings import default_settings
        >>> geo, clamp = ernie_geometry(default_settings('ernie_vl_geo'), width=640, height=480)
        >>> (geo.resized_width, geo.resized_height, geo.grid, geo.num_tokens, clamp)
        (644, 476, (1, 34, 46), 391, None)
    """
    return zero_floor_geometry(settings, width=width, height=height, name=name)


@register_family
class ErnieVL(Family):
    name = 'ernie_vl'
    settings_cls = ErnieVLSettings
    encoded_keys = ('input_ids', 'grid_thw')
    video_support = 'refused'  # ERNIE_VLTemplate.replace_tag asserts media_type == 'image'
    templates = (
        untrained_spec('ernie_vl', coords_source=_SOURCE, verification='published_code'),
        untrained_spec('ernie_vl_thinking', coords_source=_SOURCE, verification='published_code'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        # The checkpoint's remote Ernie4_5_VLImageProcessor keeps min_pixels / max_pixels; the port, size.
        return limits_from_processor(ip, settings, min_pixels=getattr(ip, 'min_pixels', None),
                                     max_pixels=getattr(ip, 'max_pixels', None))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        return ernie_geometry(settings, width=width, height=height, name=name)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        settings = template.geo_settings()
        runs = token_runs(encoded['input_ids'], token_id(template, '<|IMAGE_PLACEHOLDER|>'),
                          predicted_tokens(predicted))
        grids = image_grids(encoded, len(predicted), merge_size=settings.merge_size, runs=runs, key='grid_thw')
        return grid_sized(predicted, grids, settings.patch_size)
