"""DeepSeek-VL2 (``deepseek_vl2``): a padded global view plus a padded tile canvas from candidate resolutions.

ms-swift's ``DeepseekVL2Template._encode`` calls ``processor.tokenize_with_images('<image>' * n,
images, cropping=n <= 2)`` of the ``deepseek_vl2`` package (deepseek-ai/DeepSeek-VL2,
``deepseek_vl2/models/processing_deepseek_vl_v2.py``, MIT), not installed with swift-ext. Per image:

1. ``select_best_resolution((w, h), candidate_resolutions)`` (candidates as (width, height)):
   the candidate keeping the most pixels (``int()`` of the scaled sides), ties to the least
   waste; ``(image_size, image_size)`` when the sample has more than two images;
2. the global view: ``ImageOps.pad(image, (384, 384))`` (aspect kept, centred, mean-colour bars);
3. the local views: ``ImageOps.pad(image, (best_w, best_h))`` cut into 384 tiles;
4. tokens: ``h * (w + 1) + 1 + (rows * h) * (cols * w + 1)`` with ``h = w = ceil((384 // 14) / 2)``
   = 14 (global rows with a newline each, a separator, local rows with a newline each).

``resized_*`` is the image content on the local canvas (``extra``: the canvas and its padding);
``canvas_*`` stays unset because the model's boxes are 0-999 of the image itself
(``deepseek_vl2/serve/app_modules/utils.py::parse_ref_bbox`` maps ``x / 999 * image_w``).

The prediction assumes a sample of at most two images (cropping on); ``actual`` reads the token
runs of the encode and recomputes without cropping where they say so.

Verification: ``published_code``: the processor package is not installed, so no encode runs
offline; ``tests/unit/test_family_deepseek_vl2.py`` pins ``select_best_resolution`` and the token
count to a table computed with the published code (``tests/data/deepseek_vl2/``) and
``pil_pad_layout`` to Pillow's own ``ImageOps.pad``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import GeometryError, ImageGeometry, fitted
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .encoded import predicted_tokens, token_runs

# deepseek-ai/deepseek-vl2(-tiny, -small) processor_config.json: every (cols x 384, rows x 384) grid of at
# most 9 tiles, in the checkpoints' order; image_size = candidate_resolutions[0][0].
VL2_CANDIDATES = ((384, 384), (384, 768), (768, 384), (384, 1152), (1152, 384), (384, 1536), (1536, 384),
                  (768, 768), (384, 1920), (1920, 384), (384, 2304), (2304, 384), (768, 1152), (1152, 768),
                  (384, 2688), (2688, 384), (384, 3072), (3072, 384), (768, 1536), (1536, 768), (384, 3456),
                  (3456, 384), (1152, 1152))  # (width, height)

DEEPSEEK_BOX = ('deepseek_det', 'bare_list')
_SOURCE = ('DeepSeek-VL2 grounding: <|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>, 0-999 of the image '
           '(deepseek_vl2/serve/app_modules/utils.py parse_ref_bbox: x / 999 * image width)')


@dataclass(frozen=True)
class DeepseekVL2Settings(PreprocessSettings):
    candidate_resolutions: tuple[tuple[int, int], ...] = VL2_CANDIDATES  # (width, height)
    image_size: int = 384
    patch_size: int = 14
    downsample_ratio: int = 2
    cropping: bool = True  # ms-swift: len(images) <= 2


def select_best_resolution(*, width: int, height: int,
                           candidates: tuple[tuple[int, int], ...]) -> tuple[int, int] | None:
    """``(width, height)`` of the candidate DeepSeek-VL2's ``select_best_resolution`` picks (candidates (w, h))."""
    best, max_effective, min_wasted = None, 0, float('inf')
    for cand_w, cand_h in candidates:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            best, max_effective, min_wasted = (cand_w, cand_h), effective, wasted
    return best


def pil_pad_layout(*, width: int, height: int, canvas_width: int,
                   canvas_height: int) -> tuple[int, int, int, int]:
    """``(content_w, content_h, left, top)`` of Pillow's ``ImageOps.pad`` (its ``contain``, centred)."""
    size_w, size_h = canvas_width, canvas_height
    im_ratio, dest_ratio = width / height, canvas_width / canvas_height
    if im_ratio != dest_ratio:
        if im_ratio > dest_ratio:
            size_h = round(height / width * canvas_width)
        else:
            size_w = round(width / height * canvas_height)
    if (size_w, size_h) == (canvas_width, canvas_height):
        return size_w, size_h, 0, 0
    if size_w != canvas_width:
        return size_w, size_h, round((canvas_width - size_w) * 0.5), 0
    return size_w, size_h, 0, round((canvas_height - size_h) * 0.5)


def vl2_tokens(*, cols: int, rows: int, image_size: int = 384, patch_size: int = 14, downsample_ratio: int = 2) -> int:
    """``len(tokenized_image)`` of ``tokenize_with_images`` for a ``cols`` x ``rows`` local grid."""
    q = math.ceil((image_size // patch_size) / downsample_ratio)
    return q * (q + 1) + 1 + (rows * q) * (cols * q + 1)


@register_family
class DeepseekVL2(Family):
    name = 'deepseek_vl2'
    settings_cls = DeepseekVL2Settings
    templates = (TemplateSpec('deepseek_vl2', 'norm999', DEEPSEEK_BOX, coords_source=_SOURCE,
                              verification='published_code'),)

    @classmethod
    def settings_from_template(cls, template, settings):
        p = template.processor
        return replace(settings, candidate_resolutions=tuple((int(w), int(h)) for w, h in p.candidate_resolutions),
                       image_size=int(p.image_size), patch_size=int(p.patch_size),
                       downsample_ratio=int(p.downsample_ratio))

    @classmethod
    def geometry(cls, settings, *, width: int, height: int, cropping: bool, name: str) -> ImageGeometry:
        size = settings.image_size
        best = (select_best_resolution(width=width, height=height, candidates=settings.candidate_resolutions)
                if cropping else (size, size))
        if best is None:  # only with no candidates: the processor then fails unpacking None
            raise GeometryError(f'{name}: DeepSeek-VL2 candidate_resolutions must not be empty.')
        cw, ch, left, top = pil_pad_layout(width=width, height=height, canvas_width=best[0], canvas_height=best[1])
        cols, rows = best[0] // size, best[1] // size
        return ImageGeometry(
            original_width=width, original_height=height, resized_width=cw, resized_height=ch,
            num_tokens=vl2_tokens(cols=cols, rows=rows, image_size=size, patch_size=settings.patch_size,
                                  downsample_ratio=settings.downsample_ratio),
            tile_cols=cols, tile_rows=rows, num_tiles=cols * rows + 1, thumbnail=True,
            global_width=size, global_height=size,
            extra=(('local_width', best[0]), ('local_height', best[1]), ('local_pad_left', left),
                   ('local_pad_top', top), ('cropping', cropping)))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = cls.geometry(settings, width=width, height=height, cropping=settings.cropping, name=name)
        return fitted(geo, width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        runs = token_runs(encoded['input_ids'], template.processor.image_token_id, predicted_tokens(predicted))
        if len(runs) != len(predicted):
            return list(predicted)
        settings, out = template.geo_settings(), []
        for geo, tokens in zip(predicted, runs, strict=False):
            if geo is None or tokens == geo.num_tokens:
                out.append(geo)
                continue
            # More than two images in the sample: ms-swift turned cropping off (one 384 tile each).
            flat, _ = replace(settings, cropping=False).predict(width=geo.original_width,
                                                               height=geo.original_height)
            out.append(flat if flat.num_tokens == tokens else replace(geo, num_tokens=tokens))
        return out
