"""Image geometry: what a VLM preprocessor does to an image, as arithmetic only.

Importing this module imports no torch, PIL or swift: rewards and log tools can use it
in microseconds. Reading images (``read_image_size``) lives in ``swift_ext.images``.

Axis conventions are spelled out in every name: PIL sizes are (width, height),
``smart_resize`` takes (height, width), InternVL grids are (cols, rows).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

# qwen-vl-utils 0.0.14 (vision_process.py): pixel limits are token counts times factor**2.
MAX_RATIO = 200
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384
# PIL's own decompression-bomb limit is 2 * Image.MAX_IMAGE_PIXELS (~179 MP); we refuse at
# the same point PIL would, but from the header alone.
MAX_IMAGE_PIXELS = 2 * 89_478_485


# How a model writes box coordinates: 'abs' = pixels of the frame it saw (the resized
# image, or the padded canvas of a tiling family); 'norm1000' / 'norm1' = that frame scaled.
COORDS = ('abs', 'norm1000', 'norm1')
FRAME_UNITS = {'norm1000': 1000.0, 'norm1': 1.0}


class Clamp(str, Enum):
    """Which limit changed an image's size beyond the model's own rounding (``clamped`` in records).

    One vocabulary for every family, counted by the `vision/` metrics, `review` and `plan`. A str
    subclass: it compares equal to, and serialises as, its value.
    """

    MAX_PIXELS = 'max_pixels'  # a pixel cap shrank it (ms-swift's --max_pixels, a row's or the model's cap)
    MIN_PIXELS = 'min_pixels'  # grown up to a pixel floor
    LONGEST_EDGE = 'longest_edge'  # its longest side was capped (Pixtral, Idefics3)
    MAX_SOFT_TOKENS = 'max_soft_tokens'  # a visual-token budget shrank it (Gemma 4)
    CANVAS_FIT = 'canvas_fit'  # shrunk to fit a fixed canvas or tile grid (LLaVA-NeXT pinpoints)
    UPSCALE = 'upscale'  # enlarged to the model's fixed input size

    def __str__(self) -> str:
        return self.value


class GeometryError(ValueError):
    """An image whose geometry cannot be computed: says which image, which rule, what value."""


@dataclass(frozen=True)
class ImageGeometry:
    """What happened to one image between the user's file and the vision encoder.

    ``resized_*`` is the size of the image content the model sees. Tiling families that
    pad the resized image into a larger canvas (LLaVA-NeXT) set ``canvas_*`` and the
    content's offset ``pad_left`` / ``pad_top``; the canvas is then the frame of the model's
    answers. ``global_*`` is the size of the extra whole-image view, where there is one.
    ``extra`` holds a family's own facts as ``(name, value)`` pairs (a chosen pinpoint, ...).
    """

    original_width: int
    original_height: int
    resized_width: int
    resized_height: int
    num_tokens: int
    grid: tuple[int, int, int] | None = None  # (t, h_patches, w_patches), Qwen only
    tile_cols: int | None = None
    tile_rows: int | None = None
    num_tiles: int = 1
    thumbnail: bool = False
    canvas_width: int | None = None
    canvas_height: int | None = None
    pad_left: int = 0
    pad_top: int = 0
    global_width: int | None = None
    global_height: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def _scale(self) -> tuple[float, float]:
        return (self.resized_width / self.original_width,
                self.resized_height / self.original_height)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(width, height)`` of the frame the model's coordinates refer to."""
        return (self.canvas_width or self.resized_width, self.canvas_height or self.resized_height)

    def to_resized(self, box: Sequence[float]) -> list:
        """Map ``[x1, y1, x2, y2]`` from original pixels to the model's pixel frame."""
        return self.to_model_frame(box, 'abs')

    def to_original(self, box: Sequence[float]) -> list:
        """Map ``[x1, y1, x2, y2]`` from the model's pixel frame back to original pixels."""
        return self.from_model_frame(box, 'abs')

    def _frame_scale(self, coords: str) -> tuple[float, float]:
        if coords == 'abs':
            return 1.0, 1.0
        if coords not in FRAME_UNITS:
            raise ValueError(f'`coords` should be one of {list(COORDS)}, got {coords!r}.')
        fw, fh = self.frame_size
        return FRAME_UNITS[coords] / fw, FRAME_UNITS[coords] / fh

    def to_model_frame(self, box: Sequence[float], coords: str) -> list:
        """Map ``[x1, y1, x2, y2]`` in original pixels to what the model writes.

        ``coords``: ``'abs'`` (pixels of the frame the model saw), ``'norm1000'`` (that frame
        as 0-1000) or ``'norm1'`` (as 0-1).

        Example:
            >>> geo = ImageGeometry(original_width=640, original_height=480, resized_width=644,
            ...                     resized_height=476, num_tokens=391)
            >>> [round(v, 2) for v in geo.to_model_frame([64, 48, 320, 240], 'abs')]
            [64.4, 47.6, 322.0, 238.0]
            >>> [round(v, 6) for v in geo.to_model_frame([64, 48, 320, 240], 'norm1000')]
            [100.0, 100.0, 500.0, 500.0]
        """
        sx, sy = self._scale()
        fx, fy = self._frame_scale(coords)
        x1, y1, x2, y2 = box
        return [(x1 * sx + self.pad_left) * fx, (y1 * sy + self.pad_top) * fy,
                (x2 * sx + self.pad_left) * fx, (y2 * sy + self.pad_top) * fy]

    def from_model_frame(self, box: Sequence[float], coords: str) -> list:
        """Map a box the model wrote in ``coords`` back to original pixels (unclipped).

        Example:
            >>> geo = ImageGeometry(original_width=640, original_height=480, resized_width=644,
            ...                     resized_height=476, num_tokens=391)
            >>> [round(v, 6) for v in geo.from_model_frame([100, 100, 500, 500], 'norm1000')]
            [64.0, 48.0, 320.0, 240.0]
        """
        sx, sy = self._scale()
        fx, fy = self._frame_scale(coords)
        x1, y1, x2, y2 = box
        return [(x1 / fx - self.pad_left) / sx, (y1 / fy - self.pad_top) / sy,
                (x2 / fx - self.pad_left) / sx, (y2 / fy - self.pad_top) / sy]

    def to_dict(self) -> dict:
        # Field by field, not dataclasses.asdict: every field is a scalar or a tuple of ints,
        # so asdict's recursive deep copy buys nothing, and this runs for every logged image.
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if d['grid'] is not None:
            d['grid'] = list(d['grid'])
        d['extra'] = dict(d['extra'])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ImageGeometry:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if fields.get('grid') is not None:
            fields['grid'] = tuple(fields['grid'])
        extra = fields.get('extra') or {}
        fields['extra'] = tuple((k, tuple(v) if isinstance(v, list) else v)
                                for k, v in (extra.items() if isinstance(extra, dict) else extra))
        return cls(**fields)


def _check_side(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GeometryError(f'{what}: `{name}` must be an integer, got {value!r}.')
    if value <= 0:
        raise GeometryError(f'{what}: `{name}` must be positive, got {value}.')
    return value


def _round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor


def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def smart_resize(*, width: int, height: int, factor: int = 28,
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 max_ratio: float = MAX_RATIO, name: str = 'image') -> tuple[int, int]:
    """qwen-vl-utils' ``smart_resize`` returning ``(width, height)``, with errors instead of zeros.

    Re-implemented (not imported) so that this module needs no torch; tests pin it to
    ``qwen_vl_utils.smart_resize`` for every accepted input.
    """
    _check_side('width', width, name)
    _check_side('height', height, name)
    if max_pixels is None:
        max_pixels = IMAGE_MAX_TOKEN_NUM * factor ** 2
    if min_pixels is None:
        min_pixels = IMAGE_MIN_TOKEN_NUM * factor ** 2
    if max_pixels < min_pixels:
        raise GeometryError(f'{name}: `max_pixels` must be >= `min_pixels`, '
                            f'got max_pixels={max_pixels}, min_pixels={min_pixels}.')
    ratio = max(height, width) / min(height, width)
    if ratio > max_ratio:
        raise GeometryError(f'{name}: aspect ratio must be at most {max_ratio}, '
                            f'got {ratio:.1f} ({width}x{height}).')
    h_bar = max(factor, _round_by_factor(height, factor))
    w_bar = max(factor, _round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = _floor_by_factor(height / beta, factor)
        w_bar = _floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by_factor(height * beta, factor)
        w_bar = _ceil_by_factor(width * beta, factor)
    if h_bar <= 0 or w_bar <= 0:
        raise GeometryError(f'{name}: resizing {width}x{height} under max_pixels={max_pixels} '
                            f'with factor {factor} gives a zero side ({w_bar}x{h_bar}).')
    return w_bar, h_bar


def swift_rescaled_size(*, width: int, height: int, max_pixels: float | None,
                        name: str = 'image') -> tuple[int, int]:
    """The size ms-swift's ``rescale_image`` gives (its `--max_pixels` pre-rescale)."""
    if max_pixels is None or max_pixels <= 0 or width * height <= max_pixels:
        return width, height
    ratio = width / height
    height_scaled = math.sqrt(max_pixels / ratio)
    new_w, new_h = int(height_scaled * ratio), int(height_scaled)
    if new_w <= 0 or new_h <= 0:
        raise GeometryError(f'{name}: --max_pixels {max_pixels} shrinks {width}x{height} '
                            f'to a zero side ({new_w}x{new_h}).')
    return new_w, new_h


def qwen_geometry(*, width: int, height: int, patch_size: int = 14, merge_size: int = 2,
                  min_pixels: int | None = None, max_pixels: int | None = None,
                  max_ratio: float = MAX_RATIO, name: str = 'image') -> ImageGeometry:
    """Geometry of a Qwen2/2.5-VL (patch 14) or Qwen3-VL (patch 16) image after smart_resize."""
    factor = patch_size * merge_size
    rw, rh = smart_resize(width=width, height=height, factor=factor, min_pixels=min_pixels,
                          max_pixels=max_pixels, max_ratio=max_ratio, name=name)
    grid = (1, rh // patch_size, rw // patch_size)
    return ImageGeometry(original_width=width, original_height=height, resized_width=rw,
                         resized_height=rh, num_tokens=grid[1] * grid[2] // merge_size ** 2,
                         grid=grid)


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
    _check_side('width', width, name)
    _check_side('height', height, name)
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


# The image I/O (identity, short names, header reads) lives in swift_ext.images; these names stay
# importable from here for code written against earlier releases.
_MOVED_TO_IMAGES = ('describe_source', 'read_image_size')


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_IMAGES:
        from . import images
        return getattr(images, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def updated(geo: ImageGeometry, **changes: Any) -> ImageGeometry:
    """``geo`` with ``changes``; ``geo`` itself where they change nothing (the encode agreed with the prediction)."""
    for name, value in changes.items():
        if getattr(geo, name) != value:
            return replace(geo, **changes)
    return geo
