"""Gemma 3 (``gemma3_vision``): every image stretched to the checkpoint's square, 256 tokens.

The HF image processor decides the size inside the template's ``_encode``: transformers'
``Gemma3ImageProcessor`` resizes to ``size`` (896 x 896 for Gemma 3) without keeping the aspect
ratio, and the SigLIP tower + 4 x 4 average pool turn it into ``mm_tokens_per_image`` = 256
soft tokens (``processor.image_seq_length``).

Pan-and-scan: ms-swift 4.6's ``Gemma3VisionTemplate`` calls the image processor with
``Gemma3ProcessorKwargs._defaults['images_kwargs']``, whose explicit ``do_pan_and_scan=False``
overrides whatever the checkpoint's ``preprocessor_config.json`` says, so no crops are made and
``num_tiles`` is 1. The crop arithmetic (``pan_and_scan_batched``) is still predicted, from that
same dict, for a process that edits it; the template then inserts one 256-token sequence per
image only, and the actual values are read from the encode (``pixel_values`` rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import ImageGeometry, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import predicted_tokens, template_memo, token_runs

# Real google/gemma-3-*-it settings (preprocessor_config.json / processor_config.json).
GEMMA3_IMAGE_SIZE = 896
GEMMA3_TOKENS_PER_IMAGE = 256
# transformers' Gemma3ProcessorKwargs defaults, the values ms-swift passes.
PAN_AND_SCAN_MIN_CROP_SIZE = 256
PAN_AND_SCAN_MAX_NUM_CROPS = 4
PAN_AND_SCAN_MIN_RATIO = 1.2


@dataclass(frozen=True)
class Gemma3Settings(PreprocessSettings):
    image_width: int = GEMMA3_IMAGE_SIZE
    image_height: int = GEMMA3_IMAGE_SIZE
    tokens_per_image: int = GEMMA3_TOKENS_PER_IMAGE
    do_pan_and_scan: bool = False
    pan_and_scan_min_crop_size: int = PAN_AND_SCAN_MIN_CROP_SIZE
    pan_and_scan_max_num_crops: int = PAN_AND_SCAN_MAX_NUM_CROPS
    pan_and_scan_min_ratio_to_activate: float = PAN_AND_SCAN_MIN_RATIO


def pan_and_scan_grid(*, width: int, height: int, min_crop_size: int, max_num_crops: int,
                      min_ratio: float) -> tuple[int, int]:
    """``(cols, rows)`` of pan-and-scan crops as ``pan_and_scan_batched`` cuts them; ``(0, 0)`` for none.

    Re-implemented so this module imports no torch; tests pin it to transformers' method.
    """
    if width >= height:
        if width / height < min_ratio:
            return 0, 0
        cols = int(math.floor(width / height + 0.5))  # half rounds up
        cols = min(int(math.floor(width / min_crop_size)), cols)
        cols, rows = min(max_num_crops, max(2, cols)), 1
    else:
        if height / width < min_ratio:
            return 0, 0
        rows = int(math.floor(height / width + 0.5))
        rows = min(int(math.floor(height / min_crop_size)), rows)
        cols, rows = 1, min(max_num_crops, max(2, rows))
    if min(int(math.ceil(width / cols)), int(math.ceil(height / rows))) < min_crop_size:
        return 0, 0
    return cols, rows


_SOURCE = ("no trained box output (Gemma 3 model card; Google's answer on google/gemma-3-4b-it discussion 38); "
           "closest default: ms-swift Template.norm_bbox='norm1000' (Gemini-style prompts answer 0-1000 but "
           '[y_min, x_min, y_max, x_max])')


@register_family
class Gemma3(Family):
    name = 'gemma3'
    video_support = 'refused'  # Gemma3VisionTemplate.replace_tag asserts media_type == 'image'
    encoded_keys = ('input_ids', 'pixel_values')
    shape_keys = ('pixel_values',)
    settings_cls = Gemma3Settings
    templates = (
        untrained_spec('gemma3_vision', coords_source=_SOURCE, model_type='gemma3_vision'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        from transformers.models.gemma3.processing_gemma3 import Gemma3ProcessorKwargs

        ip = template.processor.image_processor
        # What the template passes wins over the image processor's own attributes.
        kwargs = {**{k: getattr(ip, k, None) for k in ('do_pan_and_scan', 'pan_and_scan_min_crop_size',
                                                          'pan_and_scan_max_num_crops',
                                                          'pan_and_scan_min_ratio_to_activate')},
                  **Gemma3ProcessorKwargs._defaults.get('images_kwargs', {})}
        return replace(settings, image_width=int(ip.size['width']), image_height=int(ip.size['height']),
                       tokens_per_image=int(template.processor.image_seq_length),
                       do_pan_and_scan=bool(kwargs['do_pan_and_scan']),
                       pan_and_scan_min_crop_size=int(kwargs['pan_and_scan_min_crop_size']),
                       pan_and_scan_max_num_crops=int(kwargs['pan_and_scan_max_num_crops']),
                       pan_and_scan_min_ratio_to_activate=float(kwargs['pan_and_scan_min_ratio_to_activate']))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        cols, rows = (0, 0)
        if settings.do_pan_and_scan:
            cols, rows = pan_and_scan_grid(width=width, height=height,
                                           min_crop_size=settings.pan_and_scan_min_crop_size,
                                           max_num_crops=settings.pan_and_scan_max_num_crops,
                                           min_ratio=settings.pan_and_scan_min_ratio_to_activate)
        crops = cols * rows
        return ImageGeometry(original_width=width, original_height=height, resized_width=settings.image_width,
                             resized_height=settings.image_height, num_tokens=settings.tokens_per_image,
                             num_tiles=1 + crops, thumbnail=crops > 0,
                             tile_cols=cols or None, tile_rows=rows or None), \
            fit_clamp(width=width, height=height, resized_width=settings.image_width,
                      resized_height=settings.image_height)  # every image is stretched to the fixed square

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        pixels = encoded.get('pixel_values')
        if pixels is None:
            return list(predicted)
        tokenizer = template.processor.tokenizer  # its image_token_id is a vocabulary lookup each time: once
        image_token = template_memo(template, 'gemma3.image_token', lambda: tokenizer.image_token_id)
        runs = token_runs(encoded['input_ids'], image_token, predicted_tokens(predicted))
        height, width = (int(x) for x in pixels.shape[-2:])
        # One row per image, or (with pan-and-scan) the image then its crops, image after image. The
        # template drops `num_crops`, so only the total says what happened: per image where it settles it.
        rows = int(pixels.shape[0])
        tiles = [geo.num_tiles if geo is not None else 1 for geo in predicted]
        if rows == len(predicted):
            tiles = [1] * rows
        elif len(predicted) == 1:
            tiles = [rows]
        out = []
        for i, geo in enumerate(predicted):
            if geo is None:
                out.append(geo)
                continue
            out.append(updated(geo, resized_width=width, resized_height=height, num_tiles=tiles[i],
                               num_tokens=runs[i] if i < len(runs) else geo.num_tokens))
        return out
