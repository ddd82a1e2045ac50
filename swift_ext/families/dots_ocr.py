"""dots.ocr (``dots_ocr``): qwen-vl-utils' ``fetch_image`` with its module defaults, then a Qwen2-VL processor.

ms-swift's ``DotsOCRTemplate.replace_tag`` calls ``qwen_vl_utils.fetch_image({'image': image})``
(the installed qwen-vl-utils: ``smart_resize`` to multiples of 28, ``IMAGE_MIN_TOKEN_NUM`` 4 and
``IMAGE_MAX_TOKEN_NUM`` 16384 tokens of 28 x 28) and ``_encode`` runs ``processor.image_processor``
(dots.ocr's ``DotsVLProcessor`` is a ``Qwen2_5_VLProcessor`` subclass: transformers'
``Qwen2VLImageProcessor``, patch 14, merge 2) with ``do_resize=False``; each ``<|imgpad|>`` (id 151665,
hard-coded) becomes ``image_grid_thw.prod() // 4`` tokens. Unlike the Qwen loaders, ms-swift's
``DotsOCRLoader`` does not patch qwen-vl-utils from ``MAX_PIXELS`` / ``MIN_PIXELS``, and the
template passes no per-row limits: the limits are the module's own (read live by
``settings_from_template``). The arithmetic is the Qwen family's.

dots.ocr's own layout post-processing (``post_process_cells``) assumes 11,289,600 pixels at most;
ms-swift's training encode uses qwen-vl-utils' 12,845,056.

Coordinates: layout answers are JSON cells ``{"bbox": [x1, y1, x2, y2], "category": ..., "text": ...}``
in pixels of the resized input (``dots_ocr/utils/layout_utils.py::post_process_cells`` divides by
``input_width / original_width``): ``abs``, read as flat lists.

Verification: ``published_code``. ms-swift 4.6.0's ``DotsOCRTemplate._encode`` calls
``processor.image_processor(images=..., videos=None, ...)``, which transformers 5.19's
``Qwen2VLImageProcessor`` refuses (``TypeError: ... unexpected keyword argument 'videos'``), so the
parent template cannot encode in ms-swift 4.6.0's supported environment (``transformers<5.20``);
``tests/unit/test_family_dots_ocr.py`` pins that refusal (it fails once either side changes) and
the resize to qwen-vl-utils' own ``smart_resize`` / ``fetch_image``.
"""
from __future__ import annotations

from dataclasses import replace

from . import register_family
from .base import TemplateSpec
from .qwen import FetchImageOnly

_SOURCE = ('dots.ocr layout JSON {"bbox": [x1, y1, x2, y2], ...} in pixels of the smart_resize input '
           '(rednote-hilab/dots.ocr dots_ocr/utils/layout_utils.py post_process_cells)')


@register_family
class DotsOCR(FetchImageOnly):  # DotsOCRLoader reads no image environment; DotsOCRTemplate passes no patch size
    name = 'dots_ocr'
    env_vars = ()
    sweep_knob = '--max_pixels'  # MAX_PIXELS does not reach fetch_image here
    row_max_pixels_rescales = True  # DotsOCRTemplate keeps Template._get_max_pixels (the row's, else --max_pixels)
    templates = (TemplateSpec('dots_ocr', 'abs', ('bare_list',), coords_source=_SOURCE,
                              verification='published_code'),)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        # fetch_image gets only the image: a row's min_pixels / max_pixels do not reach it.
        return super().resize(settings, width=width, height=height, row_kwargs={}, name=name)

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, swift_max_pixels=pixels)  # no MAX_PIXELS here: ms-swift's --max_pixels
