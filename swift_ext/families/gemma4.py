"""Gemma 4 (``gemma4``, ``gemma4_nothinking``, ``diffusion_gemma``): aspect kept under a soft-token budget.

The HF processor decides the size inside the template's ``_encode`` (``Gemma4Template`` calls the
whole processor): transformers' ``models/gemma4/image_processing_gemma4.py::
get_aspect_ratio_preserving_size`` scales the image (up or down) to about ``max_soft_tokens *
pooling**2`` patches of ``patch_size``, flooring each side to a multiple of ``pooling * patch``
(48 pixels for patch 16, pooling 3); a side that floors to 0 becomes one 48-pixel row/column
and the other ``floor(ratio) * 48``, capped at ``max_soft_tokens * 48``. Soft tokens =
``(height / 48) * (width / 48)``, between ``<|image>`` and ``<image|>``.
``max_soft_tokens`` is one of 70, 140, 280, 560, 1120 (default 280).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from ..geometry import Clamp, GeometryError, ImageGeometry, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import as_numpy, predicted_tokens, token_id, token_runs, token_spans
from .video_hf import ProcessorSampledVideo, position_grid, split_runs, stamps

# Real google/gemma-4-* image processor settings (also transformers' class defaults).
GEMMA4_PATCH_SIZE = 16
GEMMA4_POOLING_KERNEL_SIZE = 3
GEMMA4_MAX_SOFT_TOKENS = 280
SUPPORTED_SOFT_TOKENS = (70, 140, 280, 560, 1120)


@dataclass(frozen=True)
class Gemma4Settings(PreprocessSettings):
    patch_size: int = GEMMA4_PATCH_SIZE
    pooling_kernel_size: int = GEMMA4_POOLING_KERNEL_SIZE
    max_soft_tokens: int = GEMMA4_MAX_SOFT_TOKENS

    @property
    def side_multiple(self) -> int:
        return self.pooling_kernel_size * self.patch_size


def gemma4_resize(*, width: int, height: int, patch_size: int, max_soft_tokens: int, pooling_kernel_size: int,
                  name: str = 'image') -> tuple[int, int]:
    """``(width, height)`` as ``get_aspect_ratio_preserving_size`` gives it, GeometryError where it raises.

    Re-implemented so this module imports no torch; tests pin it to transformers' function.
    """
    max_patches = max_soft_tokens * pooling_kernel_size ** 2
    target_px = max_patches * patch_size ** 2
    factor = math.sqrt(target_px / (height * width))
    side = pooling_kernel_size * patch_size
    target_h = int(math.floor(factor * height / side)) * side
    target_w = int(math.floor(factor * width / side)) * side
    if target_h == 0 and target_w == 0:
        raise GeometryError(f'{name}: {width}x{height} resizes to 0x0 under {max_soft_tokens} soft tokens '
                            f'(sides must be multiples of {side}).')
    max_side = (max_patches // pooling_kernel_size ** 2) * side
    if target_h == 0:
        target_h, target_w = side, min(int(math.floor(width / height)) * side, max_side)
    elif target_w == 0:
        target_w, target_h = side, min(int(math.floor(height / width)) * side, max_side)
    if target_h * target_w > target_px:
        raise GeometryError(f'{name}: {width}x{height} resizes to {target_w}x{target_h}, more than '
                            f'{max_patches} patches of {patch_size} pixels.')
    return target_w, target_h


_SOURCE = ("no trained box output documented in transformers' Gemma 4 docs; closest default: ms-swift "
           "Template.norm_bbox='norm1000' (Gemini-style prompts answer 0-1000 but [y_min, x_min, y_max, x_max])")


_CLOCK = re.compile(r'\d{1,3}:\d{2}')


@register_family
class Gemma4(ProcessorSampledVideo, Family):
    name = 'gemma4'
    encoded_keys = ('input_ids', 'image_position_ids')
    settings_cls = Gemma4Settings
    templates = (
        untrained_spec('gemma4', coords_source=_SOURCE, model_type='gemma4'),
        untrained_spec('gemma4_nothinking', coords_source=_SOURCE, model_type='gemma4'),
        # Same processor; a block-diffusion model (DiffusionGemmaForBlockDiffusion), no tiny checkpoint here.
        untrained_spec('diffusion_gemma', coords_source=_SOURCE),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        return replace(settings, patch_size=int(ip.patch_size), pooling_kernel_size=int(ip.pooling_kernel_size),
                       max_soft_tokens=int(ip.max_soft_tokens))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        if settings.max_soft_tokens not in SUPPORTED_SOFT_TOKENS:
            raise GeometryError(f'{name}: `max_soft_tokens` must be one of {SUPPORTED_SOFT_TOKENS}, '
                                f'got {settings.max_soft_tokens}.')
        rw, rh = gemma4_resize(width=width, height=height, patch_size=settings.patch_size,
                               max_soft_tokens=settings.max_soft_tokens,
                               pooling_kernel_size=settings.pooling_kernel_size, name=name)
        side = settings.side_multiple
        geo = ImageGeometry(original_width=width, original_height=height, resized_width=rw, resized_height=rh,
                            num_tokens=(rh // side) * (rw // side))
        # Scaled up or down to about max_soft_tokens: a side the budget shrank names it.
        return geo, fit_clamp(width=width, height=height, resized_width=rw, resized_height=rh,
                              shrunk=Clamp.MAX_SOFT_TOKENS)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        positions = encoded.get('image_position_ids')
        if positions is None:
            return list(predicted)
        patch = template.processor.image_processor.patch_size
        runs = token_runs(encoded['input_ids'], template.config.image_token_id, predicted_tokens(predicted))
        found = as_numpy(positions)
        found = positions if found is None else found
        out = []
        for i, geo in enumerate(predicted):
            if geo is None or i >= len(found):
                out.append(geo)
                continue
            cols, rows = patch_extents(found[i], geo.resized_width // patch, geo.resized_height // patch)
            out.append(updated(geo, resized_width=cols * patch, resized_height=rows * patch,
                               num_tokens=runs[i] if i < len(runs) else geo.num_tokens))
        return out

    # --- video: Gemma4VideoProcessor samples ``num_frames`` (32) frames evenly (``families/video_hf.py``); each
    # frame is written "mm:ss <|image>" + a run of <|video|> tokens + "<image|>", sized by its position ids.
    video_encoded_keys = ('input_ids', 'video_position_ids')
    video_header_backend = 'torchcodec'  # the processor loads the path itself (transformers' fetch_videos)
    video_support_of = {'diffusion_gemma': 'none'}  # no tiny checkpoint to verify its encode here

    @classmethod
    def video_frames(cls, template, encoded, ids, counts):
        positions = encoded.get('video_position_ids')
        patch = int(template.processor.video_processor.patch_size)
        runs = token_spans(ids, token_id(template, '<|video|>'))
        out, first = [], 0
        for frames in split_runs(runs, counts):
            grid = None if frames is None or positions is None else position_grid(positions, first)
            first += len(frames or ())
            if grid is None:
                out.append(None)
                continue
            rows, cols = grid
            out.append(((cols * patch, rows * patch), (len(frames), rows, cols), [n for _, n in frames],
                        stamps(template, ids, frames, _CLOCK)))
        return out


def patch_extents(positions, cols: int, rows: int) -> tuple[int, int]:
    """``(columns, rows)`` of patches in one image's ``[max_patches, 2]`` (x, y) positions, padding -1.

    The processor lists the patches row by row, so the expected grid shows as its last patch at
    (cols - 1, rows - 1) followed by padding (or the end): checked there first; otherwise the
    extents are read from every position.
    """
    n = cols * rows
    if 0 < n <= len(positions):
        last = positions[n - 1]
        if int(last[0]) == cols - 1 and int(last[1]) == rows - 1 and (n == len(positions) or int(positions[n][0]) < 0):
            return cols, rows
    extents = positions.amax(0) if hasattr(positions, 'amax') else positions.max(0)  # torch, numpy
    return int(extents[0]) + 1, int(extents[1]) + 1
