"""Building blocks several families share, each written once: a model that stretches every image to one fixed
size (PaliGemma, Florence-2, GOT-OCR 2.0), and a template that resizes the image itself in ``replace_tag``
(Qwen's ``fetch_image``, Keye-VL). Internal module; no family is registered here.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..geometry import stretched, updated
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
