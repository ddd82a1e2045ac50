"""Kimi-K2.5 / K2.6 (``kimi_k25``): MoonViT's NaViT resize under a patch budget, padded to the merge kernel.

ms-swift's ``KimiK25Template._encode`` hands the checkpoint's image processor a list of
``{'type': 'image', 'image': ...}`` medias and expands each ``<|media_pad|>`` to
``grid_thws[i].prod() // prod(merge_kernel_size)`` tokens. That call is the API of the processor
moonshotai/Kimi-K2.5 ships as remote code (``KimiK25VisionProcessor.preprocess`` in
``kimi_k25_vision_processing.py``, returning ``grid_thws``); transformers 5.19's own port,
``Kimi_K25ImageProcessor``, takes images and returns ``image_grid_thw``, so the template cannot
encode with it (ms-swift 4.6 lists ``transformers<5.0`` for this model). Both compute the size with
the same ``navit_resize`` (``media_utils.navit_resize_image`` in the checkpoint, ``navit_resize`` in
``transformers/models/kimi_k25/image_processing_kimi_k25.py``):

1. ``scale = min(1, sqrt(in_patch_limit / (max(1, w // patch) * max(1, h // patch))),
   side_limit * patch / w, side_limit * patch / h)``; never an upscale;
2. the content is ``min(max(1, int(side * scale)), side_limit * patch)`` per side;
3. zero padding right and bottom to a multiple of ``merge * patch`` (28): the canvas.

``grid_thws`` = (1, canvas_h / 14, canvas_w / 14); tokens = its product // 4. ``resized_*`` is the
content, ``canvas_*`` the padded frame (content at the top left). ``fixed_output_tokens`` only
changes the processor's own token count, which the template does not use.

Verification: ``published_code`` (the template's processor is remote code; no encode runs
offline). The arithmetic is pinned by ``tests/unit/test_family_kimi_k25.py`` to transformers' port,
``navit_resize``, over thousands of sizes and to its processor's ``image_grid_thw`` on real images.
Defaults: ``in_patch_limit`` 16384, 512 patches a side, patch 14, merge 2 (``Kimi_K25ImageProcessor``'s
defaults, ported from moonshotai/Kimi-K2.5's ``media_proc_cfg``); ``settings_from_template`` reads
the live processor (either API).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import Clamp, ImageGeometry, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .encoded import image_grids, predicted_tokens, token_id, token_runs

KIMI_PATCH_SIZE = 14
KIMI_MERGE_SIZE = 2
KIMI_IN_PATCH_LIMIT = 16384
KIMI_SIDE_LIMIT = 512  # patches on one side

_SOURCE = ('no box output documented on the Kimi-K2.5 model card or technical report (arXiv 2602.02276); 0-1 is '
           "the closest default (Kimi-VL's GUI grounding), and geo_iou scores only in the convention named by "
           'SWIFT_EXT_COORDS')


@dataclass(frozen=True)
class KimiK25Settings(PreprocessSettings):
    patch_size: int = KIMI_PATCH_SIZE
    merge_size: int = KIMI_MERGE_SIZE
    in_patch_limit: int = KIMI_IN_PATCH_LIMIT
    patch_limit_on_one_side: int = KIMI_SIDE_LIMIT


def navit_resize(*, width: int, height: int, patch_size: int = KIMI_PATCH_SIZE, merge_size: int = KIMI_MERGE_SIZE,
                 in_patch_limit: int = KIMI_IN_PATCH_LIMIT,
                 side_limit: int = KIMI_SIDE_LIMIT) -> tuple[tuple[int, int], tuple[int, int], Clamp | None]:
    """``((width, height), (canvas_width, canvas_height), clamp)`` as ``navit_resize`` gives them.

    Example:
        >>> navit_resize(width=640, height=480)
        ((640, 480), (644, 504), None)
        >>> navit_resize(width=9000, height=300)
        ((7168, 238), (7168, 252), <Clamp.LONGEST_EDGE: 'longest_edge'>)
    """
    by_total = math.sqrt(in_patch_limit / (max(1.0, width // patch_size) * max(1.0, height // patch_size)))
    by_width = side_limit * patch_size / width
    by_height = side_limit * patch_size / height
    scale = min(1.0, by_total, by_width, by_height)
    longest = side_limit * patch_size
    new_w = min(max(1, int(width * scale)), longest)
    new_h = min(max(1, int(height * scale)), longest)
    factor = merge_size * patch_size
    canvas = (new_w + (factor - new_w % factor) % factor, new_h + (factor - new_h % factor) % factor)
    clamp = None
    if scale < 1.0:  # the budget that bound names it: the total patch count, else a side's
        clamp = Clamp.MAX_PIXELS if by_total <= min(by_width, by_height) else Clamp.LONGEST_EDGE
    return (new_w, new_h), canvas, clamp


def _geometry(settings: KimiK25Settings, *, width: int, height: int, resized: tuple[int, int],
              canvas: tuple[int, int]) -> ImageGeometry:
    grid = (1, canvas[1] // settings.patch_size, canvas[0] // settings.patch_size)
    return ImageGeometry(original_width=width, original_height=height, resized_width=resized[0],
                         resized_height=resized[1], canvas_width=canvas[0], canvas_height=canvas[1], grid=grid,
                         num_tokens=grid[1] * grid[2] // settings.merge_size ** 2)


@register_family
class KimiK25(Family):
    name = 'kimi_k25'
    settings_cls = KimiK25Settings
    encoded_keys = ('input_ids', 'grid_thws')
    templates = (
        TemplateSpec('kimi_k25', 'norm1', ('bare_list',), coords_source=_SOURCE, boxes_trained=False,
                     verification='published_code'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        cfg = getattr(ip, 'media_proc_cfg', None)
        if cfg:  # the checkpoint's remote KimiK25VisionProcessor
            merge = cfg.get('merge_kernel_size', settings.merge_size)
            return replace(settings, patch_size=int(cfg['patch_size']),
                           merge_size=int(merge[0] if isinstance(merge, (list, tuple)) else merge),
                           in_patch_limit=int(cfg['in_patch_limit']),
                           patch_limit_on_one_side=int(cfg['patch_limit_on_one_side']))
        size = dict(getattr(ip, 'size', None) or {})  # transformers' Kimi_K25ImageProcessor
        return replace(settings, patch_size=int(ip.patch_size), merge_size=int(ip.merge_size),
                       in_patch_limit=int(ip.max_patches),
                       patch_limit_on_one_side=int(size.get('max_height') or settings.patch_limit_on_one_side))

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, in_patch_limit=max(1, pixels // settings.patch_size ** 2))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        resized, canvas, clamp = navit_resize(width=width, height=height, patch_size=settings.patch_size,
                                              merge_size=settings.merge_size, in_patch_limit=settings.in_patch_limit,
                                              side_limit=settings.patch_limit_on_one_side)
        return _geometry(settings, width=width, height=height, resized=resized, canvas=canvas), clamp

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        settings = template.geo_settings()
        runs = token_runs(encoded['input_ids'], token_id(template, '<|media_pad|>'), predicted_tokens(predicted))
        grids = image_grids(encoded, len(predicted), merge_size=settings.merge_size, runs=runs, key='grid_thws')
        if grids is None:
            return list(predicted)
        patch = settings.patch_size
        return [geo if geo is None or found is None else
                updated(geo, grid=found[0], canvas_width=found[0][2] * patch, canvas_height=found[0][1] * patch,
                        num_tokens=found[1])
                for geo, found in zip(predicted, grids, strict=True)]
