"""InternVL dynamic tiling as ms-swift's own templates do it (``_dynamic_preprocess``).

The image is cut into ``image_size`` tiles at the grid (cols x rows, at most ``max_num``
tiles) nearest its aspect ratio, plus a thumbnail when there is more than one tile; each
tile costs ``(image_size // 14)**2 / 4`` tokens. ms-swift reads ``MAX_NUM`` and
``INPUT_SIZE`` from the environment. A row's ``chat_template_kwargs.max_pixels`` feeds
ms-swift's pre-rescale (``--max_pixels``), since InternVL has no pixel cap of its own.
The encode shows each image as one run of ``<IMG_CONTEXT>`` tokens (tiles x tokens per tile).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import _target_ratios, internvl_geometry, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int, predicted_tokens, token_id, token_runs

_BOX = ('internvl_box',)
_SOURCE = 'InternVL grounding format: <ref>label</ref><box>[[x1, y1, x2, y2]]</box> in 0-1000'


@dataclass(frozen=True)
class InternvlSettings(PreprocessSettings):
    image_size: int = 448
    min_num: int = 1
    max_num: int = 12
    use_thumbnail: bool = True
    tokens_per_tile: int = 256

    def tile_grids(self) -> tuple:
        return _target_ratios(self.min_num, self.max_num)


def tokens_per_tile(image_size: int) -> int:
    """ms-swift's ``num_image_token`` for a tile size: (size // 14)**2 x 0.5**2."""
    return int((image_size // 14) ** 2 * 0.25)


@register_family
class Internvl(Family):
    name = 'internvl'
    settings_cls = InternvlSettings
    env_vars = ('MAX_NUM', 'INPUT_SIZE')
    templates = (
        TemplateSpec('internvl2', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl2_phi3', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl2_5', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl3_5', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl3_5_gpt', 'norm1000', _BOX, coords_source=_SOURCE),
    )

    @classmethod
    def settings_for(cls, parent, *, env, swift_max_pixels=None, overrides=None):
        s = replace(cls.default_settings(parent), swift_max_pixels=swift_max_pixels)
        size = env_int(env, 'INPUT_SIZE')
        if size:
            s = replace(s, image_size=size, tokens_per_tile=tokens_per_tile(size))
        max_num = env_int(env, 'MAX_NUM')
        if max_num is not None:
            s = replace(s, max_num=max_num)
        return replace(s, **{k: v for k, v in dict(overrides or {}).items() if v is not None})

    @classmethod
    def settings_from_template(cls, template, settings):
        return replace(settings, image_size=int(template.input_size), max_num=int(template.max_num),
                       tokens_per_tile=tokens_per_tile(int(template.input_size)))

    @classmethod
    def predict(cls, settings, *, width, height, row_kwargs, name):
        w, h, clamped = cls.pre_rescaled(settings, width=width, height=height, row_kwargs=row_kwargs, name=name)
        geo = internvl_geometry(width=w, height=h, image_size=settings.image_size, min_num=settings.min_num,
                                max_num=settings.max_num, use_thumbnail=settings.use_thumbnail,
                                ratios=settings.tile_grids(), name=name)
        geo = replace(geo, num_tokens=geo.num_tiles * settings.tokens_per_tile,
                      original_width=width, original_height=height)
        return geo, clamped

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        runs = token_runs(encoded['input_ids'], token_id(template, '<IMG_CONTEXT>'), predicted_tokens(predicted))
        if len(runs) != len(predicted):
            return list(predicted)
        settings = template.geo_settings()
        return [None if geo is None else _with_tokens(geo, tokens, settings.tokens_per_tile)
                for geo, tokens in zip(predicted, runs, strict=False)]


def _with_tokens(geo, tokens: int, per_tile: int):
    tiles = tokens // per_tile
    # The tile count is a fact; the predicted grid is kept only if it agrees.
    if tiles != geo.num_tiles:
        return updated(geo, num_tokens=tokens, num_tiles=tiles)
    return updated(geo, num_tokens=tokens)

