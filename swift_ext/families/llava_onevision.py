"""LLaVA-OneVision through transformers (``LlavaOneVisionHfTemplate``): LLaVA-NeXT's anyres, SigLIP views.

The same canvas, padding and tiles as LLaVA-NeXT (``llava_next.py``), with 384-pixel views and 36
pinpoints up to 2304 x 2304 (llava-hf/llava-onevision-qwen2-0.5b-ov-hf). Tokens follow
``processing_llava_onevision.py::_get_number_of_features``: the unpadded feature grid (27 x 27 per
view), shrunk by ``sqrt(rows * cols / (9 * 27**2))`` when that exceeds 1.1 (``anyres_max_9``), one
newline per row, and ``num_image_tokens`` (729, no CLS) for the global view.

ms-swift's template counts the tokens itself (``<image>`` = 151646, hard-coded) and, unlike the HF
processor, never drops a token for the 'default' strategy nor treats a multi-image row differently:
each image of a row gets its full anyres count. swift-ext records what the template does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..geometry import GeometryError
from . import register_family
from .base import TemplateSpec
from .llava_next import AnyresSettings, LlavaNext

OV_VIEW_SIZE = 384
OV_PINPOINTS = tuple((OV_VIEW_SIZE * rows, OV_VIEW_SIZE * cols) for rows in range(1, 7) for cols in range(1, 7))
OV_IMAGE_TOKEN_ID = 151646  # LlavaOneVisionHfTemplate._encode: findall(input_ids, 151646)

_OV_SOURCE = ('no trained box output documented for LLaVA-OneVision (model card, transformers docs); '
              'norm1 = 0-1 of the padded canvas, the LLaVA-1.5/NeXT grounding convention it descends from. '
              "ms-swift's own grounding data for this template is 0-1000 (Template.norm_bbox='norm1000')")


@dataclass(frozen=True)
class LlavaOnevisionSettings(AnyresSettings):
    image_grid_pinpoints: tuple[tuple[int, int], ...] = OV_PINPOINTS
    tile_size: int = OV_VIEW_SIZE
    view_height: int = OV_VIEW_SIZE
    view_width: int = OV_VIEW_SIZE
    vision_feature_select_strategy: str = 'full'
    num_image_tokens: int = 729  # (384 // 14) ** 2, SigLIP has no CLS
    vision_aspect_ratio: str = 'anyres_max_9'


@register_family
class LlavaOnevision(LlavaNext):
    name = 'llava_onevision'
    settings_cls = LlavaOnevisionSettings
    templates = (TemplateSpec('llava_onevision_hf', 'norm1', ('bare_list',), coords_source=_OV_SOURCE,
                              model_type='llava_onevision_hf', boxes_trained=False),)

    @classmethod
    def base_grid(cls, settings):
        side = int(math.sqrt(settings.num_image_tokens))  # the processor's patches_height = patches_width
        return side, side, settings.num_image_tokens

    @classmethod
    def max_num_patches(cls, settings, name) -> int | None:
        # The processor's own parse: int(vision_aspect_ratio.strip('anyres_max_')), which raises on
        # anything else (then the template refuses every image).
        try:
            return int(settings.vision_aspect_ratio.strip('anyres_max_'))  # noqa: B005 (the processor's own parse)
        except ValueError:
            raise GeometryError(f'{name}: vision_aspect_ratio must look like "anyres_max_N", '
                                f'got {settings.vision_aspect_ratio!r}.') from None

    @classmethod
    def dropped_tokens(cls, settings) -> int:
        return 0  # LlavaOneVisionHfTemplate._encode ignores vision_feature_select_strategy

    @classmethod
    def image_token_id(cls, template) -> int:
        return OV_IMAGE_TOKEN_ID

    @classmethod
    def processor_settings(cls, processor) -> dict:
        return {'num_image_tokens': int(processor.num_image_tokens),
                'vision_aspect_ratio': str(processor.vision_aspect_ratio)}
