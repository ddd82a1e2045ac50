"""GLM-4.1V / GLM-4.5V (and GLM-5.3-Flash, ``glm5_next``): the processor resizes inside ``_encode``.

ms-swift's templates hand the image to transformers' GLM image processor (``glm4v`` calls
``processor.image_processor`` and adds ``<|begin_of_image|>`` / ``<|end_of_image|>``, ids
151339 / 151340 hard-coded; ``glm4_5v`` and ``glm5_next`` call the whole processor, which
expands ``<|image|>``). Tokens = ``image_grid_thw.prod() // merge**2``. There are no
environment variables and no per-row limits: the limits are the processor's ``size``.

Two resize rules, both re-implemented here without torch and pinned by tests:

* ``glm4v`` (GLM-4.1V, 4.5V, 4.6V, and GLM-OCR through ``Glm46VImageProcessor``, the same function;
  ``models/glm4v/image_processing_glm4v.py::smart_resize``):
  Qwen-style rounding to multiples of ``patch * merge`` (28), but counted over
  ``temporal_patch_size`` (2) frames, so the pixel cap is ``longest_edge / 2`` and the floor
  ``shortest_edge / 2``; a side under 28 is first scaled up with ``int()``; a ratio over 200
  is refused.
* ``glm5_next`` (GLM-5.3-Flash; ``models/glm5_next/image_processing_glm5_next.py``): the
  sides are ceiled to multiples of 28 inside a token budget (``min_image_tokens`` /
  ``max_image_tokens``, found by a binary search over heights), the image is resized into
  that canvas without upscaling (unless below the minimum) and padded right and bottom.
  ``resized_*`` is the image content; the padded canvas is in ``extra`` (``canvas_width`` /
  ``canvas_height``), not in ``canvas_*``, because the checkpoints' 0-1000 answers refer to
  the image, not to the zero padding.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from ..geometry import Clamp, GeometryError, ImageGeometry, ceil_by_factor, round_within, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, untrained_spec
from .encoded import encoded_rows, image_grids, predicted_tokens, token_id, token_runs
from .video_hf import ProcessorSampledVideo, runs_between, stamps

GLM_MAX_RATIO = 200
# GLM-4.1V-9B-Thinking's preprocessor_config.json (also AutoGLM-Phone-9B, GLM-4.6V-Flash).
GLM_MIN_PIXELS = 12544  # size['shortest_edge'] = 112 * 112
GLM_MAX_PIXELS = 9633792  # size['longest_edge'] = 14 * 14 * 2 * 2 * 2 * 6144
# Glm5NextImageProcessor's class defaults (token counts, not pixels).
GLM5_MIN_IMAGE_TOKENS = 16
GLM5_MAX_IMAGE_TOKENS = 8000

_BOX = ('glm_box', 'bare_list')
_SOURCE = ('GLM-4.1V-Thinking / GLM-4.5V model cards: grounding answers '
           '<|begin_of_box|>[x1,y1,x2,y2]<|end_of_box|> in 0-1000 of the image')


@dataclass(frozen=True)
class Glm4vSettings(PreprocessSettings):
    resize_rule: str = 'glm4v'  # 'glm4v' or 'glm5_next'
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = GLM_MIN_PIXELS  # glm4v rule: size['shortest_edge']
    max_pixels: int = GLM_MAX_PIXELS  # glm4v rule: size['longest_edge']
    patch_expand_factor: int = 1  # glm5_next rule
    min_image_tokens: int = GLM5_MIN_IMAGE_TOKENS  # glm5_next rule
    max_image_tokens: int = GLM5_MAX_IMAGE_TOKENS  # glm5_next rule

    @property
    def factor(self) -> int:
        if self.resize_rule == 'glm5_next':
            return self.patch_size * self.merge_size * self.patch_expand_factor
        return self.patch_size * self.merge_size


def glm4v_smart_resize(*, width: int, height: int, factor: int = 28, temporal_factor: int = 2,
                       min_pixels: int = GLM_MIN_PIXELS, max_pixels: int = GLM_MAX_PIXELS,
                       name: str = 'image') -> tuple[tuple[int, int], Clamp | None]:
    """transformers' GLM-4.1V ``smart_resize`` as ``((width, height), clamped)``.

    Called by the processor with ``num_frames = temporal_factor``: every pixel count is
    doubled, so the cap is ``max_pixels / 2``. ``clamped`` is ``Clamp.MAX_PIXELS`` / ``MIN_PIXELS``
    when that branch rescaled the image, else ``UPSCALE`` where a side under ``factor`` was first
    scaled up to it, else None.

    Example:
        >>> glm4v_smart_resize(width=640, height=480)
        ((644, 476), None)
        >>> glm4v_smart_resize(width=1920, height=1080, max_pixels=2 * 1003520)
        ((1316, 728), <Clamp.MAX_PIXELS: 'max_pixels'>)
    """
    grown = height < factor or width < factor
    if grown:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    ratio = max(height, width) / min(height, width)
    if ratio > GLM_MAX_RATIO:
        raise GeometryError(f'{name}: GLM-4.1V refuses an aspect ratio over {GLM_MAX_RATIO}, '
                            f'got {ratio:.1f} ({width}x{height} after its small-side upscale).')
    # Called with num_frames = temporal_factor: t_bar = round(frames / temporal) * temporal = frames.
    size, clamp = round_within(width=width, height=height, factor=factor, min_pixels=min_pixels,
                               max_pixels=max_pixels, frames=temporal_factor, min_side=factor)
    return size, clamp or (Clamp.UPSCALE if grown else None)


def glm5_next_canvas(*, width: int, height: int, factor: int = 28, temporal_factor: int = 2,
                     min_tokens: int = GLM5_MIN_IMAGE_TOKENS, max_tokens: int = GLM5_MAX_IMAGE_TOKENS,
                     name: str = 'image') -> tuple[tuple[int, int], Clamp | None]:
    """transformers' GLM-5.3-Flash ``smart_resize``: the padded canvas ``(width, height)``, clamped."""
    per_token = temporal_factor * factor ** 2
    min_pixels, max_pixels = min_tokens * per_token, max_tokens * per_token
    frames = max(temporal_factor, round(temporal_factor / temporal_factor) * temporal_factor)
    if max_pixels < frames * factor ** 2:
        raise GeometryError(f'{name}: max_image_tokens={max_tokens} is too small for one {factor}-pixel patch.')
    h_al, w_al = ceil_by_factor(height, factor), ceil_by_factor(width, factor)
    clamped = None
    if frames * h_al * w_al < min_pixels:
        scale = math.sqrt(min_pixels / (temporal_factor * height * width))
        h_al = ceil_by_factor(max(1, math.ceil(height * scale)), factor)
        w_al = ceil_by_factor(max(1, math.ceil(width * scale)), factor)
        clamped = Clamp.MIN_PIXELS
    if frames * h_al * w_al > max_pixels:
        # The processor's binary search over content heights, kept step for step: the
        # result depends on which candidates it visits.
        low, high = 1, height
        h_al, w_al = factor, factor
        while low <= high:
            content_h = (low + high) // 2
            content_w = max(1, math.floor(width * content_h / height))
            cand_h, cand_w = ceil_by_factor(content_h, factor), ceil_by_factor(content_w, factor)
            if frames * cand_h * cand_w <= max_pixels:
                h_al, w_al = cand_h, cand_w
                low = content_h + 1
            else:
                high = content_h - 1
        clamped = Clamp.MAX_PIXELS
    return (w_al, h_al), clamped


def glm5_next_content(*, width: int, height: int, canvas_width: int, canvas_height: int, factor: int = 28,
                      temporal_factor: int = 2, min_tokens: int = GLM5_MIN_IMAGE_TOKENS) -> tuple[int, int]:
    """Size of the image inside the GLM-5.3-Flash canvas (``Glm5NextImageProcessor.resize``)."""
    scale = min(canvas_height / height, canvas_width / width)
    if temporal_factor * height * width >= temporal_factor * factor ** 2 * min_tokens:
        scale = min(1.0, scale)  # no upscaling unless the image is under the token floor
    return (max(1, min(canvas_width, math.floor(width * scale))),
            max(1, min(canvas_height, math.floor(height * scale))))


_SECONDS = re.compile(r'\d+(?:\.\d+)?')


@register_family
class Glm4v(ProcessorSampledVideo, Family):
    name = 'glm4v'
    encoded_keys = ('input_ids', 'image_grid_thw')
    settings_cls = Glm4vSettings
    templates = (
        TemplateSpec('glm4v', 'norm1000', _BOX, coords_source=_SOURCE, model_type='glm4v'),
        TemplateSpec('glm4_5v', 'norm1000', _BOX, coords_source=_SOURCE, model_type='glm4v'),
        TemplateSpec('glm5_next', 'norm1000', _BOX, defaults={'resize_rule': 'glm5_next'},
                     coords_source=_SOURCE + "; GLM-5.3-Flash (glm5_next) uses GLM-4.5V's vision tokens, "
                     'its convention is assumed, not documented'),
        # GLM-OCR (GLMOCRTemplate): the image processor's own call, <|image|> framed by 59256 / 59257, and
        # transformers' Glm46VImageProcessor, whose smart_resize is GLM-4.1V's (same limits, 12544 / 9633792).
        untrained_spec('glm_ocr', model_type='glm_ocr',
                       coords_source='no box output documented on the GLM-OCR model card (text, formula, table and '
                                     'JSON extraction; layout boxes come from PP-DocLayout in its pipeline)'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        common = dict(patch_size=int(ip.patch_size), merge_size=int(ip.merge_size),
                      temporal_patch_size=int(ip.temporal_patch_size))
        if settings.resize_rule == 'glm5_next':
            return replace(settings, patch_expand_factor=int(getattr(ip, 'patch_expand_factor', 1)),
                           min_image_tokens=int(ip.min_image_tokens), max_image_tokens=int(ip.max_image_tokens),
                           **common)
        size = ip.size
        get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
        return replace(settings, min_pixels=get('shortest_edge'), max_pixels=get('longest_edge'), **common)

    @classmethod
    def with_budget(cls, settings, pixels):
        if settings.resize_rule == 'glm5_next':
            return replace(settings, max_image_tokens=max(1, pixels // settings.factor ** 2))
        # The processor's cap counts two frames: `pixels` of image need 2 * pixels of budget.
        return replace(settings, max_pixels=2 * pixels)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        if settings.resize_rule == 'glm5_next':
            return _glm5_next_geometry(settings, width=width, height=height, name=name)
        (rw, rh), clamp = glm4v_smart_resize(
            width=width, height=height, factor=settings.factor, temporal_factor=settings.temporal_patch_size,
            min_pixels=settings.min_pixels, max_pixels=settings.max_pixels, name=name)
        return _geometry(settings, rw, rh), clamp

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        settings = template.geo_settings()
        runs = token_runs(encoded['input_ids'], token_id(template, '<|image|>'), predicted_tokens(predicted))
        # The token run is what the model gets; the grid is the fallback if runs are odd.
        grids = image_grids(encoded, len(predicted), merge_size=settings.merge_size, runs=runs)
        if grids is None:
            return list(predicted)
        out = []
        for geo, found in zip(predicted, grids, strict=True):
            if geo is None or found is None:
                out.append(geo)
                continue
            (t, gh, gw), tokens = found
            size = (gw * settings.patch_size, gh * settings.patch_size)
            if settings.resize_rule == 'glm5_next':
                extra = dict(geo.extra, canvas_width=size[0], canvas_height=size[1])
                out.append(updated(geo, grid=(t, gh, gw), num_tokens=tokens, extra=tuple(extra.items())))
            else:
                out.append(updated(geo, resized_width=size[0], resized_height=size[1], grid=(t, gh, gw),
                                   num_tokens=tokens))
        return out

    # --- video (GLM-4.5V; ms-swift's glm4v template refuses a video outside vLLM mode): Glm4vVideoProcessor
    # samples at 2 fps (``families/video_hf.py``), frames pair up; per pair the encode writes
    # "<|begin_of_image|>" + a run of <|image|> + "<|end_of_image|>" + its time in seconds, in a video block.
    video_encoded_keys = ('input_ids', 'video_grid_thw')
    video_frames_per_step = 2
    # GLM4VTemplate.replace_tag: `assert media_type in ['image']`; GLM-5.3's processor: no tiny checkpoint here.
    video_support_of = {'glm4v': 'refused', 'glm5_next': 'none'}

    @classmethod
    def video_frames(cls, template, encoded, ids, counts):
        grids = encoded_rows(encoded, 'video_grid_thw')
        groups = runs_between(ids, token_id(template, '<|image|>'), token_id(template, '<|begin_of_video|>'),
                              token_id(template, '<|end_of_video|>'))
        ends = [i for i, t in enumerate(ids) if t == token_id(template, '<|end_of_video|>')]
        patch = int(template.processor.video_processor.patch_size)
        out = []
        for i in range(len(counts)):
            if grids is None or len(grids) != len(counts) or i >= len(groups) or not groups[i]:
                out.append(None)
                continue
            t, h, w = (int(v) for v in grids[i])
            runs = groups[i]
            out.append(((w * patch, h * patch), (t, h, w), [n for _, n in runs],
                        stamps(template, ids, runs, _SECONDS, after=True, stop=ends[i])))
        return out


def _geometry(settings: Glm4vSettings, width: int, height: int, **fields) -> ImageGeometry:
    grid = (1, height // settings.patch_size, width // settings.patch_size)
    return ImageGeometry(original_width=width, original_height=height, resized_width=width,
                         resized_height=height, grid=grid,
                         num_tokens=grid[1] * grid[2] // settings.merge_size ** 2, **fields)


def _glm5_next_geometry(settings: Glm4vSettings, *, width: int, height: int,
                        name: str) -> tuple[ImageGeometry, Clamp | None]:
    kwargs = dict(factor=settings.factor, temporal_factor=settings.temporal_patch_size)
    (cw, ch), clamped = glm5_next_canvas(width=width, height=height, min_tokens=settings.min_image_tokens,
                                         max_tokens=settings.max_image_tokens, name=name, **kwargs)
    rw, rh = glm5_next_content(width=width, height=height, canvas_width=cw, canvas_height=ch,
                               min_tokens=settings.min_image_tokens, **kwargs)
    geo = _geometry(settings, cw, ch, extra=(('canvas_width', cw), ('canvas_height', ch)))
    return replace(geo, resized_width=rw, resized_height=rh), clamped
