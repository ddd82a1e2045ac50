"""PaddleOCR-VL 1.5 (``paddle_ocr_1_5``): the processor resizes inside ``_encode``.

ms-swift's ``PaddleOCR1_5Template._encode`` calls ``processor.image_processor`` and expands
each ``<|IMAGE_PLACEHOLDER|>`` (id 100295, hard-coded) to ``image_grid_thw.prod() // merge**2``
tokens. The resize is transformers' ``models/paddleocr_vl/image_processing_paddleocr_vl.py::
smart_resize`` (factor ``patch * merge`` = 28, one frame): a side under 28 is first set to 28
with the other side scaled by ``round``; a ratio over 200 is refused; then Qwen-style
rounding inside ``[min_pixels, max_pixels]``. Re-implemented here without torch and pinned by
tests.

Limits: the processor's ``size`` (PaddleOCR-VL-1.5's ``preprocessor_config.json``:
``min_pixels`` 112896 = 144 x 28², ``max_pixels`` 1003520 = 1280 x 28²; transformers' class
defaults are 384² / 1536²). A row's ``chat_template_kwargs`` ``shortest_edge`` /
``longest_edge`` (pixel counts; falsy values ignored) replace the ``size`` for that row, and
the processor then needs BOTH: one alone makes it raise, and so does ``predict``. A row's
``max_pixels`` is ms-swift's own pre-rescale, as for every template.

Coordinates: PaddleOCR-VL 1.5 has no trained box output. Its only localisation is the
``Spotting:`` task, text-line quadrilaterals written as eight ``<|LOC_n|>`` tokens on a 0-1000
grid (upstream ``post_process_for_spotting``), which no ``[x1, y1, x2, y2]`` style reads.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import Clamp, GeometryError, patch_grid, round_within
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, row_number
from .encoded import grid_sized, image_grids, predicted_tokens, token_runs

PADDLE_MAX_RATIO = 200
# PaddlePaddle/PaddleOCR-VL-1.5 preprocessor_config.json.
PADDLE_MIN_PIXELS = 112896
PADDLE_MAX_PIXELS = 1003520
IMAGE_PLACEHOLDER_ID = 100295  # ms-swift PaddleOCRTemplate.image_token_id
ROW_LIMITS = ('shortest_edge', 'longest_edge')

_SOURCE = ('no trained box output: PaddleOCR-VL 1.5 localises only in its Spotting: task, as '
           'quadrilaterals of eight <|LOC_n|> tokens on a 0-1000 grid; norm1000 and bare lists are '
           'the closest default')


@dataclass(frozen=True)
class PaddleOcrSettings(PreprocessSettings):
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int = PADDLE_MIN_PIXELS  # size['shortest_edge']
    max_pixels: int = PADDLE_MAX_PIXELS  # size['longest_edge']

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def paddle_smart_resize(*, width: int, height: int, factor: int = 28, min_pixels: float = PADDLE_MIN_PIXELS,
                        max_pixels: float = PADDLE_MAX_PIXELS,
                        name: str = 'image') -> tuple[tuple[int, int], Clamp | None]:
    """transformers' PaddleOCR-VL ``smart_resize`` as ``((width, height), clamped)``.

    ``clamped``: ``MAX_PIXELS`` / ``MIN_PIXELS`` where that branch rescaled the image, else
    ``UPSCALE`` where a side under ``factor`` was first set to it, else None.

    Example:
        >>> paddle_smart_resize(width=640, height=480)
        ((644, 476), None)
        >>> paddle_smart_resize(width=20, height=600)
        ((84, 1848), <Clamp.MIN_PIXELS: 'min_pixels'>)
    """
    grown = height < factor or width < factor
    if height < factor:
        width, height = round(width * factor / height), factor
    if width < factor:
        height, width = round(height * factor / width), factor
    ratio = max(height, width) / min(height, width)
    if ratio > PADDLE_MAX_RATIO:
        raise GeometryError(f'{name}: PaddleOCR-VL refuses an aspect ratio over {PADDLE_MAX_RATIO}, '
                            f'got {ratio:.1f} ({width}x{height} after its small-side upscale).')
    size, clamp = round_within(width=width, height=height, factor=factor, min_pixels=min_pixels,
                               max_pixels=max_pixels, min_side=factor)
    return size, clamp or (Clamp.UPSCALE if grown else None)  # a side under `factor` was scaled up to it


def row_size_limits(settings: PaddleOcrSettings, row_kwargs, name: str) -> tuple[float, float]:
    """``(min_pixels, max_pixels)`` for a row, as ``PaddleOCR1_5Template._encode`` passes them."""
    given = {}
    for key in ROW_LIMITS:
        value = row_kwargs.get(key)
        if value:  # ms-swift skips falsy values (`if value:`)
            given[key] = row_number(row_kwargs, key, name)
    if not given:
        return settings.min_pixels, settings.max_pixels
    if len(given) == 1:
        (key, value), = given.items()
        raise GeometryError(f"{name}: chat_template_kwargs gives only `{key}`={value!r}; PaddleOCR-VL's "
                            f'processor needs both `shortest_edge` and `longest_edge` in one row.')
    return given['shortest_edge'], given['longest_edge']


@register_family
class PaddleOcr(Family):
    name = 'paddle_ocr'
    video_support = 'refused'  # PaddleOCRTemplate.replace_tag (1.5's parent) asserts media_type == 'image'
    encoded_keys = ('input_ids', 'image_grid_thw')
    settings_cls = PaddleOcrSettings
    templates = (
        TemplateSpec('paddle_ocr_1_5', 'norm1000', ('bare_list',), coords_source=_SOURCE, model_type='paddleocr_vl',
                     boxes_trained=False),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        size = ip.size
        get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
        return replace(settings, patch_size=int(ip.patch_size), merge_size=int(ip.merge_size),
                       min_pixels=get('shortest_edge'), max_pixels=get('longest_edge'))

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, max_pixels=pixels)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        min_pixels, max_pixels = row_size_limits(settings, row_kwargs, name)
        (rw, rh), clamp = paddle_smart_resize(width=width, height=height, factor=settings.factor,
                                              min_pixels=min_pixels, max_pixels=max_pixels, name=name)
        return patch_grid(width=width, height=height, resized_width=rw, resized_height=rh,
                          patch_size=settings.patch_size, merge_size=settings.merge_size), clamp

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        settings = template.geo_settings()
        runs = token_runs(encoded['input_ids'], template.image_token_id, predicted_tokens(predicted))
        grids = image_grids(encoded, len(predicted), merge_size=settings.merge_size, runs=runs)
        return grid_sized(predicted, grids, settings.patch_size)
