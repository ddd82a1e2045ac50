"""Building blocks several families share, each written once: a model that stretches every image to one fixed
size (PaliGemma, Florence-2, GOT-OCR 2.0), and a template that resizes the image itself in ``replace_tag``
(Qwen's ``fetch_image``, Keye-VL), and the ``smart_resize`` copy of transformers' ERNIE-4.5-VL and HunYuanVL image
processors. Internal module; no family is registered here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..geometry import patch_grid, stretched, updated, zero_floor_smart_resize
from .base import Family, PreprocessSettings


@dataclass(frozen=True)
class StretchedSettings(PreprocessSettings):
    """The one input size and token count of a :class:`StretchedFamily` (a family's subclass sets the defaults)."""
    image_width: int = 0
    image_height: int = 0
    tokens_per_image: int = 0


class StretchedFamily(Family):
    """Every image resized to ``image_width`` x ``image_height``, aspect not kept, ``tokens_per_image`` tokens."""

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        return stretched(width=width, height=height, resized_width=settings.image_width,
                         resized_height=settings.image_height, num_tokens=settings.tokens_per_image)


class HandsResizedImage:
    """A family mixin: the template's ``replace_tag`` resized the image already (``entry.resized``), in every mode,
    so an engine gets that size too, processed with ``do_resize`` False: its grid is that size in patches,
    whatever the engine's processor would have chosen itself."""
    reads_replace_tag = True

    @classmethod
    def replaced_size(cls, template, inputs, index):
        image = inputs.images[index]
        return tuple(image.size) if hasattr(image, 'size') else None

    @classmethod
    def handed(cls, template, encoded, entries, predicted):
        settings, out = template.geo_settings(), []
        for entry, geo in zip(entries, predicted, strict=False):
            if geo is None or entry.resized is None:
                out.append(geo)
                continue
            width, height = entry.resized
            grid = (1, height // settings.patch_size, width // settings.patch_size)
            out.append(updated(geo, resized_width=width, resized_height=height, grid=grid,
                               num_tokens=grid[1] * grid[2] // settings.merge_size ** 2))
        return out, 'handed_image'


def zero_floor_geometry(settings, *, width: int, height: int, name: str = 'image',
                        tokens: Callable[[int, int], int] | None = None):
    """``(ImageGeometry, clamp)`` of a ``width`` x ``height`` input to an image processor with transformers'
    zero-floor ``smart_resize`` (``settings``: patch and merge sizes, min and max pixels); ``tokens(grid_h, grid_w)``
    where the tokens are not the patches over ``merge_size**2``."""
    factor = settings.patch_size * settings.merge_size
    (rw, rh), clamp = zero_floor_smart_resize(width=width, height=height, factor=factor,
                                              min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
                                              name=name)
    patch = settings.patch_size
    return patch_grid(width=width, height=height, resized_width=rw, resized_height=rh, patch_size=patch,
                      merge_size=settings.merge_size,
                      num_tokens=tokens(rh // patch, rw // patch) if tokens else None), clamp


def limits_from_processor(ip, settings, *, min_pixels=None, max_pixels=None):
    """``settings`` with the image processor ``ip``'s limits (``min_pixels`` / ``max_pixels`` where given, else its
    ``size``'s ``shortest_edge`` / ``longest_edge``, else the settings'), patch and merge sizes."""
    size = dict(getattr(ip, 'size', None) or {})
    return replace(settings, min_pixels=int(min_pixels or size.get('shortest_edge') or settings.min_pixels),
                   max_pixels=int(max_pixels or size.get('longest_edge') or settings.max_pixels),
                   patch_size=int(getattr(ip, 'patch_size', settings.patch_size)),
                   merge_size=int(getattr(ip, 'merge_size', settings.merge_size)))
