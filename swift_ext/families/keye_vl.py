"""Keye-VL 1.5 (``keye_vl_1_5``): the template resizes with keye-vl-utils' ``fetch_image``.

ms-swift's ``KeyeVLTemplate.replace_tag`` calls ``keye_vl_utils.fetch_image({'image': image})``
(PyPI keye-vl-utils 1.5.2, ``keye_vl_utils/vision_process.py``, Apache-2.0) and ``_encode`` then
runs the checkpoint's image processor with ``do_resize=False``: ``image_grid_thw`` = (1, h / 14,
w / 14), tokens = its product // 4 (``merge_size`` 2). ``fetch_image`` is the older qwen-vl-utils
rule, reproduced here:

* refused (``ValueError``) when ``max / min`` side > ``MAX_RATIO`` (200);
* each side rounded to a multiple of 28 (at least 28); over ``MAX_PIXELS`` (20480 x 28 x 28,
  16,056,320) both sides are floored after scaling by ``sqrt(h * w / MAX_PIXELS)``; under
  ``MIN_PIXELS`` (4 x 28 x 28) ceiled after scaling up;
* no per-row limits: the template passes only the image.

ms-swift's ``KeyeVLLoader`` patches the module's ``MIN_PIXELS``, ``MAX_PIXELS`` and ``MAX_RATIO``
(``patch_qwen_vl_utils``: environment variables of those names) when the processor loads;
``IMAGE_FACTOR`` is patched too but ``fetch_image``'s ``size_factor`` default was bound at import,
so the factor stays 28.

Verification: ``published_code``. keye-vl-utils is not installed with swift-ext, and Keye-VL
1.5's image processor is remote code (and needs transformers 4.52.4): no encode runs offline.
``tests/unit/test_family_keye_vl.py`` pins the arithmetic to a table computed with the published
``smart_resize`` (``tests/data/keye_vl/``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import Clamp, GeometryError, check_side, patch_grid, round_within, updated
from . import register_family
from .base import Family, PreprocessSettings, env_int, untrained_spec
from .common import HandsResizedImage
from .encoded import image_grids

# keye-vl-utils 1.5.2 vision_process.py
KEYE_FACTOR = 28
KEYE_MIN_PIXELS = 4 * 28 * 28
KEYE_MAX_PIXELS = 20480 * 28 * 28
KEYE_MAX_RATIO = 200

_SOURCE = ('no box output documented in the Keye-VL-1.5 model card; ms-swift keeps '
           "Template.norm_bbox='norm1000' for KeyeVLTemplate")


@dataclass(frozen=True)
class KeyeSettings(PreprocessSettings):
    patch_size: int = 14
    merge_size: int = 2
    factor: int = KEYE_FACTOR
    min_pixels: int = KEYE_MIN_PIXELS
    max_pixels: int = KEYE_MAX_PIXELS
    max_ratio: int = KEYE_MAX_RATIO


def keye_smart_resize(*, width: int, height: int, factor: int = KEYE_FACTOR, min_pixels: int = KEYE_MIN_PIXELS,
                      max_pixels: int = KEYE_MAX_PIXELS, max_ratio: float = KEYE_MAX_RATIO,
                      name: str = 'image') -> tuple[tuple[int, int], Clamp | None]:
    """keye-vl-utils' ``smart_resize`` as ``((width, height), clamp)``; GeometryError where it raises."""
    check_side('width', width, name)
    check_side('height', height, name)
    ratio = max(width, height) / min(width, height)
    if ratio > max_ratio:
        raise GeometryError(f'{name}: keye-vl-utils refuses an aspect ratio over {max_ratio} '
                            f'(MAX_RATIO), got {ratio:.1f} ({width}x{height}).')
    # Its final max(side, factor) holds in every branch: round_within's min_side.
    return round_within(width=width, height=height, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels,
                        min_side=factor)


@register_family
class KeyeVL(HandsResizedImage, Family):
    name = 'keye_vl'
    settings_cls = KeyeSettings
    encoded_keys = ('image_grid_thw',)
    sweep_knob = 'MAX_PIXELS'
    env_vars = ('MIN_PIXELS', 'MAX_PIXELS', 'MAX_RATIO')
    templates = (untrained_spec('keye_vl_1_5', coords_source=_SOURCE, verification='published_code'),)

    @classmethod
    def settings_from_env(cls, settings, env):
        changes = {'min_pixels': env_int(env, 'MIN_PIXELS'), 'max_pixels': env_int(env, 'MAX_PIXELS'),
                   'max_ratio': env_int(env, 'MAX_RATIO')}
        return replace(settings, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def settings_from_template(cls, template, settings):
        from keye_vl_utils import vision_process as vp  # the module the template resizes with
        ip = template.processor.image_processor
        return replace(settings, min_pixels=int(vp.MIN_PIXELS), max_pixels=int(vp.MAX_PIXELS),
                       max_ratio=int(vp.MAX_RATIO), patch_size=int(getattr(ip, 'patch_size', settings.patch_size)),
                       merge_size=int(getattr(ip, 'merge_size', settings.merge_size)))

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, max_pixels=pixels)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        (rw, rh), clamp = keye_smart_resize(width=width, height=height, factor=settings.factor,
                                            min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
                                            max_ratio=settings.max_ratio, name=name)
        return patch_grid(width=width, height=height, resized_width=rw, resized_height=rh,
                          patch_size=settings.patch_size, merge_size=settings.merge_size), clamp

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        grids = image_grids(encoded, len(predicted), merge_size=template.geo_settings().merge_size)
        if grids is None:
            return list(predicted)
        out = []
        for geo, entry, found in zip(predicted, entries, grids, strict=False):
            if geo is None or found is None:
                out.append(geo)
                continue
            (t, h, w), tokens = found
            size = entry.resized or (w * template.geo_settings().patch_size, h * template.geo_settings().patch_size)
            out.append(updated(geo, resized_width=size[0], resized_height=size[1], grid=(t, h, w), num_tokens=tokens))
        return out
