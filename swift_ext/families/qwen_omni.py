"""Qwen2.5-Omni and Qwen3-Omni: Qwen's smart_resize, called through ``qwen_omni_utils``.

ms-swift's ``Qwen2_5OmniTemplate.replace_tag`` resizes each image with
``qwen_omni_utils.fetch_image`` instead of qwen-vl-utils'. In qwen-omni-utils 0.0.9 that
module's constants, ``smart_resize`` and ``fetch_image`` are the same source as qwen-vl-utils
0.0.14's (tests pin it), so the arithmetic is the Qwen family's; what differs is where the
limits live and which patch size is used:

- limits: the Omni loaders run ``compat_qwen_vl_utils`` (``MAX_PIXELS`` -> ``IMAGE_MAX_TOKEN_NUM``)
  and ``patch_qwen_vl_utils`` on ``qwen_omni_utils.vision_process``, so the live limits are read
  from that module, not from ``qwen_vl_utils``;
- patch: Qwen2.5-Omni (``version='omni_v2_5'``) calls ``fetch_image`` without
  ``image_patch_size`` (14, factor 28; the loader converts ``MAX_PIXELS`` with 14); Qwen3-Omni
  (``omni_v3``) passes the processor's patch size (16, factor 32; the loader converts with 16).
"""
from __future__ import annotations

from . import register_family
from .base import TemplateSpec
from .qwen import Qwen

_JSON = ('qwen2_5_json', 'bare_list')


@register_family
class QwenOmni(Qwen):
    name = 'qwen_omni'
    templates = (
        TemplateSpec('qwen2_5_omni', 'abs', _JSON, model_type='qwen2_5_omni',
                     coords_source="ms-swift Qwen2_5OmniTemplate subclasses Qwen2_5VLTemplate (norm_bbox='none'): "
                                   'bbox_2d in pixels of the resized image, as Qwen2.5-VL'),
        # ms-swift registers Qwen3-Omni only as the MoE model type (transformers has no dense Qwen3-Omni).
        TemplateSpec('qwen3_omni', 'norm1000', _JSON, defaults={'patch_size': 16}, model_type='qwen3_omni_moe',
                     coords_source="ms-swift Qwen3OmniTemplate norm_bbox='norm1000': bbox_2d in 0-1000, as Qwen3-VL"),
    )

    vision_module = 'qwen_omni_utils.v2_5.vision_process'

    @classmethod
    def vision_process(cls):
        from qwen_omni_utils import vision_process
        return vision_process

    @classmethod
    def fetch_patch_size(cls, template, patch):
        # ms-swift passes image_patch_size to fetch_image only for omni_v3; otherwise the default 14.
        return patch if template.version == 'omni_v3' else 14
