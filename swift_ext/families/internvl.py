"""InternVL dynamic tiling as ms-swift's own templates do it (``_dynamic_preprocess``).

The image is cut into ``image_size`` tiles at the grid (cols x rows, at most ``max_num``
tiles) nearest its aspect ratio, plus a thumbnail when there is more than one tile; each
tile costs ``(image_size // 14)**2 / 4`` tokens. ms-swift reads ``MAX_NUM`` and
``INPUT_SIZE`` from the environment. A row's ``chat_template_kwargs.max_pixels`` feeds
ms-swift's pre-rescale (``--max_pixels``), since InternVL has no pixel cap of its own.
The encode shows each image as one run of ``<IMG_CONTEXT>`` tokens (tiles x tokens per tile).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..geometry import GeometryError, ImageGeometry, check_side, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int, predicted_tokens, token_id, token_runs

_BOX = ('internvl_box',)
_SOURCE = 'InternVL grounding format: <ref>label</ref><box>[[x1, y1, x2, y2]]</box> in 0-1000'


def internvl_target_ratios(min_num: int, max_num: int) -> list:
    """Tile grids (cols, rows) in the order ms-swift's ``_dynamic_preprocess`` tries them."""
    return list(_target_ratios(min_num, max_num))


@functools.lru_cache(maxsize=64)
def _target_ratios(min_num: int, max_num: int) -> tuple:
    # Building the set is cubic in max_num: cached, as every image of a run asks the same.
    # The set-then-sort construction is copied on purpose: ties between grids of equal
    # area are broken by the set's iteration order, which an equivalent list would change.
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                 for j in range(1, n + 1) if min_num <= i * j <= max_num)
    return tuple(sorted(ratios, key=lambda x: x[0] * x[1]))


def internvl_closest_grid(*, width: int, height: int, ratios: Sequence[tuple[int, int]],
                          image_size: int) -> tuple[int, int]:
    """The (cols, rows) grid InternVL picks: nearest aspect ratio, larger grid on ties if big."""
    aspect_ratio = width / height
    best_diff = float('inf')
    best = (1, 1)
    area = width * height
    for cols, rows in ratios:
        diff = abs(aspect_ratio - cols / rows)
        if diff < best_diff:
            best_diff = diff
            best = (cols, rows)
        elif diff == best_diff and area > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def internvl_geometry(*, width: int, height: int, image_size: int = 448, min_num: int = 1,
                      max_num: int = 12, use_thumbnail: bool = True, patch_size: int = 14,
                      downsample_ratio: float = 0.5, ratios: Sequence | None = None,
                      name: str = 'image') -> ImageGeometry:
    """Geometry of an InternVL dynamic-resolution image: tile grid, thumbnail, tokens.

    ``ratios`` overrides the candidate grids (and their order) for processors that
    enumerate them differently, such as the transformers-native InternVL processor.
    """
    check_side('width', width, name)
    check_side('height', height, name)
    if min_num < 1 or max_num < min_num:
        raise GeometryError(f'{name}: need 1 <= min_num <= max_num, '
                            f'got min_num={min_num}, max_num={max_num}.')
    if ratios is None:
        ratios = internvl_target_ratios(min_num, max_num)
    cols, rows = internvl_closest_grid(width=width, height=height, ratios=ratios,
                                      image_size=image_size)
    blocks = cols * rows
    thumbnail = bool(use_thumbnail and blocks != 1)
    num_tiles = blocks + (1 if thumbnail else 0)
    tokens_per_tile = int((image_size // patch_size) ** 2 * downsample_ratio ** 2)
    return ImageGeometry(original_width=width, original_height=height,
                         resized_width=image_size * cols, resized_height=image_size * rows,
                         num_tokens=num_tiles * tokens_per_tile, tile_cols=cols, tile_rows=rows,
                         num_tiles=num_tiles, thumbnail=thumbnail)


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
    tile_knob = 'max_num'
    env_vars = ('MAX_NUM', 'INPUT_SIZE')
    templates = (
        TemplateSpec('internvl2', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl2_phi3', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl2_5', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl3_5', 'norm1000', _BOX, coords_source=_SOURCE),
        TemplateSpec('internvl3_5_gpt', 'norm1000', _BOX, coords_source=_SOURCE),
    )

    @classmethod
    def settings_from_env(cls, settings, env):
        size = env_int(env, 'INPUT_SIZE')
        if size:
            settings = replace(settings, image_size=size, tokens_per_tile=tokens_per_tile(size))
        max_num = env_int(env, 'MAX_NUM')
        if max_num is not None:
            settings = replace(settings, max_num=max_num)
        return settings

    @classmethod
    def settings_from_template(cls, template, settings):
        return replace(settings, image_size=int(template.input_size), max_num=int(template.max_num),
                       tokens_per_tile=tokens_per_tile(int(template.input_size)))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = internvl_geometry(width=width, height=height, image_size=settings.image_size, min_num=settings.min_num,
                                max_num=settings.max_num, use_thumbnail=settings.use_thumbnail,
                                ratios=settings.tile_grids(), name=name)
        # The image is stretched onto the tile grid: grown for most small images, shrunk for large ones.
        return replace(geo, num_tokens=geo.num_tiles * settings.tokens_per_tile), fit_clamp(
            width=width, height=height, resized_width=geo.resized_width, resized_height=geo.resized_height)

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

