"""LLaVA-OneVision-1.5 and -2 (``llava_onevision1_5``, ``llava_onevision2``): Qwen's resize, its own limits.

ms-swift's ``LLaVAOneVision1_5Template`` (and ``LLaVAOneVision2Template``, which only adds
``patch_positions``) resizes in ``replace_tag`` with ``qwen_vl_utils.fetch_image({'image': ...})`` (no
per-row limits, no ``image_patch_size``: factor 14 x 2 = 28), then calls the checkpoint's image processor
with ``do_resize=False``: ``image_grid_thw`` is the resized size in 14-pixel patches, and each image
expands to ``prod(grid) // merge**2`` ``<|image_pad|>`` tokens (id 151655, hard-coded). The checkpoints'
image processor is transformers' ``Qwen2VLImageProcessor`` (patch 14, merge 2: vLLM builds theirs the
same way), so the arithmetic is the ``qwen`` family's; what differs is where the limits come from:

- ms-swift's ``LlavaOnevisionLoader`` / ``LlavaOnevision2Loader`` never turn ``MAX_PIXELS`` /
  ``MIN_PIXELS`` into qwen-vl-utils' token limits (only the Qwen loaders do), so no environment variable
  applies: the limits are qwen-vl-utils' own (4 to 16384 tokens of 28 x 28), read live from the module;
- the template keeps ``Template._get_max_pixels``: a row's ``chat_template_kwargs`` ``max_pixels``
  pre-rescales the image (ms-swift's ``rescale_image``), and ``fetch_image`` never sees it;
- for vLLM the template hands over the resized image without ``do_resize=False``: the engine's own
  processor decides, so the geometry there is the prediction from the size handed over.
"""
from __future__ import annotations

from . import register_family
from .base import TemplateSpec
from .common import HandsResizedImage
from .qwen import IMAGE_MAX_TOKEN_NUM, IMAGE_MIN_TOKEN_NUM, FetchImageOnly, Qwen, qwen_resize

_SOURCE = ('no box output documented in the LLaVA-OneVision-1.5 / -2 model cards; closest default: ms-swift writes '
           "dataset boxes for this template as <|box_start|>(x1,y1),(x2,y2)<|box_end|> in 0-1000 (norm_bbox "
           "'norm1000', QWENVL_BBOX_FORMAT legacy)")
_BOX = ('qwen2_box_tokens', 'bare_list')
# qwen-vl-utils 0.0.14's own limits (4 and 16384 tokens of 28 x 28), what the live module holds unpatched.
_LIMITS = {'min_pixels': IMAGE_MIN_TOKEN_NUM * 28 ** 2, 'max_pixels': IMAGE_MAX_TOKEN_NUM * 28 ** 2}


@register_family
class LlavaOnevision15(FetchImageOnly):  # the loaders read no MAX_PIXELS; no patch size passed
    name = 'llava_onevision1_5'
    env_vars = ()
    row_max_pixels_rescales = True  # Template._get_max_pixels: the row's max_pixels pre-rescales
    sweep_knob = '--max_pixels'
    # The tiny checkpoint is a Qwen2.5-VL model with this processor (LLaVA-OneVision's modeling code is remote);
    # it trains under llava_onevision1_5's template only: OV2's _post_encode passes patch_positions to the tower.
    templates = (
        TemplateSpec('llava_onevision1_5', 'norm1000', _BOX, boxes_trained=False, coords_source=_SOURCE,
                     model_type='qwen2_5_vl', defaults=_LIMITS),
        TemplateSpec('llava_onevision2', 'norm1000', _BOX, boxes_trained=False, coords_source=_SOURCE,
                     defaults=_LIMITS),
    )

    @classmethod
    def with_budget(cls, settings, pixels):
        return super(Qwen, cls).with_budget(settings, pixels)  # --max_pixels, the only knob

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        factor = settings.factor  # fetch_image gets no row limits: only the module's own
        min_pixels = settings.min_pixels if settings.min_pixels is not None else IMAGE_MIN_TOKEN_NUM * factor ** 2
        max_pixels = settings.max_pixels if settings.max_pixels is not None else IMAGE_MAX_TOKEN_NUM * factor ** 2
        return qwen_resize(width=width, height=height, patch_size=settings.patch_size, merge_size=settings.merge_size,
                           min_pixels=min_pixels, max_pixels=max_pixels, max_ratio=settings.max_ratio, name=name)

    @classmethod
    def handed(cls, template, encoded, entries, predicted):
        return super(HandsResizedImage, cls).handed(template, encoded, entries, predicted)  # Family's
