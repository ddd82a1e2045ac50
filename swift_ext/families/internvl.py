"""InternVL dynamic tiling as ms-swift's own templates do it (``_dynamic_preprocess``).

The image is cut into ``image_size`` tiles at the grid (cols x rows, at most ``max_num``
tiles) nearest its aspect ratio, plus a thumbnail when there is more than one tile; each
tile costs ``(image_size // 14)**2 / 4`` tokens. ms-swift reads ``MAX_NUM`` and
``INPUT_SIZE`` from the environment. A row's ``chat_template_kwargs.max_pixels`` feeds
ms-swift's pre-rescale (``--max_pixels``), since InternVL has no pixel cap of its own.
The encode shows each image as one run of ``<IMG_CONTEXT>`` tokens (tiles x tokens per tile).
"""
from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..geometry import GeometryError, ImageGeometry, check_side, fit_clamp, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int
from .encoded import predicted_tokens, token_id, token_runs

_BOX = ('internvl_box',)
_SOURCE = 'InternVL grounding format: <ref>label</ref><box>[[x1, y1, x2, y2]]</box> in 0-1000'


# The most tiles (MAX_NUM) swift-ext predicts a tiling for. ms-swift's own loop is cubic in it (MAX_NUM=1000:
# about 12 s an image in ms-swift 4.6.0); above this the grids alone would take seconds to list here too.
MAX_TILES = 10_000


@dataclass(frozen=True)
class TileGrids:
    """Candidate tile grids (cols, rows) in the order a processor tries them, indexed by aspect ratio.

    ``order`` is the scan order; ``at`` maps each distinct ``cols / rows`` value (as the float the
    processor computes) to its grids, ``(position in order, cols, rows)`` in scan order; ``values``
    are those keys ascending.
    """

    order: tuple[tuple[int, int], ...]
    values: tuple[float, ...]
    at: dict

    @classmethod
    def of(cls, order: Sequence[tuple[int, int]]) -> TileGrids:
        at: dict = {}
        for i, (cols, rows) in enumerate(order):
            value = cols / rows
            found = at.get(value)
            if found is None:
                at[value] = [(i, cols, rows)]
            else:
                found.append((i, cols, rows))
        return cls(tuple(order), tuple(sorted(at)), at)


@functools.lru_cache(maxsize=64)
def swift_tile_grids(min_num: int, max_num: int) -> TileGrids:
    """The grids in the order ms-swift's ``_dynamic_preprocess`` tries them.

    ms-swift builds ``set((i, j) for n in range(min_num, max_num + 1) for i in 1..n for j in 1..n if
    min_num <= i * j <= max_num)`` and sorts it by area: ties between grids of equal area fall in
    the set's iteration order, which its loop fixes but is cubic in ``max_num``. A set's layout
    depends only on the order in which new members arrive (adding a present member changes
    nothing), so adding each grid once, in the order of its first arrival, builds the same set in
    O(max_num log max_num): grid (i, j) first arrives at n = max(i, j, min_num), and at each n the
    loop reaches (1, n), (2, n), ... (n - 1, n), then (n, 1), ... (n, n). Tests compare the result
    with ms-swift's own construction for every max_num up to 150 and more.
    """
    def first_arrivals():
        top = min(max_num, max(min_num, 1))  # at n = min_num every small grid arrives at once
        for i in range(1, top + 1):
            for j in range(1, top + 1):
                if min_num <= i * j <= max_num:
                    yield i, j
        for n in range(top + 1, max_num + 1):
            other = max_num // n  # the other side of a grid with a side n
            low = max(1, -(-min_num // n))
            yield from ((i, n) for i in range(low, min(n - 1, other) + 1))
            yield from ((n, j) for j in range(low, min(n, other) + 1))

    if max_num < min_num:
        return TileGrids.of(())
    return TileGrids.of(sorted(set(first_arrivals()), key=lambda x: x[0] * x[1]))


def closest_grid(*, width: int, height: int, grids: TileGrids, image_size: int) -> tuple[int, int]:
    """The (cols, rows) grid InternVL picks, as ms-swift's ``_find_closest_aspect_ratio`` scans ``grids.order``.

    The scan keeps the first grid of the least ``abs(aspect - cols / rows)``, then moves to each
    later grid of that same difference whose tiles cover less than twice the image
    (``area > 0.5 * image_size**2 * cols * rows``); (1, 1) when there is no grid. The grids of the
    least difference are found by bisection (a float difference only grows away from the aspect
    ratio), so the answer costs microseconds whatever ``max_num`` is.
    """
    values = grids.values
    if not values:
        return 1, 1
    aspect = width / height
    k = bisect.bisect_left(values, aspect)
    best = min(abs(aspect - values[j]) for j in (k - 1, k) if 0 <= j < len(values))
    tied = []
    j = k - 1
    while j >= 0 and abs(aspect - values[j]) == best:
        tied.extend(grids.at[values[j]])
        j -= 1
    j = k
    while j < len(values) and abs(aspect - values[j]) == best:
        tied.extend(grids.at[values[j]])
        j += 1
    tied.sort()
    chosen = tied[0]
    area = width * height
    for grid in tied[1:]:
        if area > 0.5 * image_size * image_size * grid[1] * grid[2]:
            chosen = grid
    return chosen[1], chosen[2]


def check_max_tiles(max_num: int, name: str) -> None:
    """GeometryError above ``MAX_TILES`` (README: the InternVL limit)."""
    if max_num > MAX_TILES:
        raise GeometryError(f"{name}: swift-ext predicts InternVL tilings of at most {MAX_TILES} tiles, got "
                            f"`max_num` (MAX_NUM, or the processor's max_patches) = {max_num}; ms-swift's own "
                            'tiling loop is cubic in it (MAX_NUM=1000: about 13 s an image).')


def internvl_geometry(*, width: int, height: int, image_size: int = 448, min_num: int = 1,
                      max_num: int = 12, use_thumbnail: bool = True, patch_size: int = 14,
                      downsample_ratio: float = 0.5, grids: TileGrids | None = None,
                      name: str = 'image') -> ImageGeometry:
    """Geometry of an InternVL dynamic-resolution image: tile grid, thumbnail, tokens.

    ``grids`` overrides the candidate grids (and their order) for processors that enumerate them
    differently, such as the transformers-native InternVL processor. Like ms-swift, a ``max_num``
    under ``min_num`` leaves no grid to choose: one tile, no thumbnail.
    """
    check_side('width', width, name)
    check_side('height', height, name)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise GeometryError(f"{name}: the InternVL tile side (`image_size`: INPUT_SIZE, or the processor's "
                            f"crop_size) must be a positive integer, got {image_size!r}; ms-swift's "
                            'transform_image cannot resize an image to it.')
    if grids is None:
        check_max_tiles(max_num, name)
        grids = swift_tile_grids(min_num, max_num)
    cols, rows = closest_grid(width=width, height=height, grids=grids, image_size=image_size)
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

    def tile_grids(self) -> TileGrids:
        """The candidate grids in the order this processor tries them."""
        return swift_tile_grids(self.min_num, self.max_num)


def tokens_per_tile(image_size: int) -> int:
    """ms-swift's ``num_image_token`` for a tile size: (size // 14)**2 x 0.5**2."""
    return int((image_size // 14) ** 2 * 0.25)


@register_family
class Internvl(Family):
    name = 'internvl'
    video_support = 'as_images'  # Internvl2Template.replace_tag: replace_video2image, VIDEO_SEGMENTS frames
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
        if size is not None:  # 0 and below too: refused per image, as ms-swift's transform_image refuses them
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
        check_max_tiles(settings.max_num, name)
        geo = internvl_geometry(width=width, height=height, image_size=settings.image_size, min_num=settings.min_num,
                                max_num=settings.max_num, use_thumbnail=settings.use_thumbnail,
                                grids=settings.tile_grids(), name=name)
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

