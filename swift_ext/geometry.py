"""The geometry core: what every family's arithmetic is written with (internal; the public names are in
``swift_ext.__all__``).

:class:`ImageGeometry` (what happened to one image), :class:`Clamp` (which limit changed its size),
:class:`GeometryError` (an image a parent template refuses), ms-swift's own ``--max_pixels``
pre-rescale (``swift_rescaled_size``) and the rounding steps several processors share. Each
family's own arithmetic lives in its module under ``swift_ext.families``.

Importing this module imports no torch, PIL or swift: rewards and log tools can use it
in microseconds. Reading images (``read_image_size``) lives in ``swift_ext.images``.

Axis conventions are spelled out in every name: PIL sizes are (width, height), processors
often take (height, width), tile grids are (cols, rows).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

# PIL's own decompression-bomb limit is 2 * Image.MAX_IMAGE_PIXELS (~179 MP); we refuse at
# the same point PIL would, but from the header alone.
MAX_IMAGE_PIXELS = 2 * 89_478_485


# How a model writes box coordinates: 'abs' = pixels of the frame it saw (the resized
# image, or the padded canvas of a tiling family); 'norm1000' / 'norm999' / 'norm1' = that frame scaled
# (DeepSeek-VL2 / DeepSeek-OCR write 0-999: their post-processing maps x / 999 * width);
# 'bins1000' / 'bins1024' = that frame cut into integer location bins (one token each).
COORDS = ('abs', 'norm1000', 'norm1', 'norm999', 'bins1000', 'bins1024')
FRAME_UNITS = {'norm1000': 1000.0, 'norm1': 1.0, 'norm999': 999.0, 'bins1000': 1000.0, 'bins1024': 1023.0}
# Location-bin conventions, as their reference code quantizes and decodes them:
# - 'bins1000' (Florence-2: `<loc_0>`..`<loc_999>`): transformers' Florence2PostProcessor, bin =
#   floor(x / side * 1000) clipped to 0-999; a bin decodes to its centre, (bin + 0.5) * side / 1000.
# - 'bins1024' (PaliGemma: `<loc0000>`..`<loc1023>`): big_vision's PaliGemma ops, bin =
#   round(x / side * 1023) clipped to 0-1023 (refcoco_mask2str); a bin decodes to bin / 1023 * side.
# {coords: (highest bin, offset added to a bin when it is decoded, the rounding that picks a bin)}
BINS = {'bins1000': (999, 0.5, math.floor), 'bins1024': (1023, 0.0, round)}


class Clamp(str, Enum):
    """Which limit changed an image's size beyond the model's own rounding (``clamped`` in records).

    One vocabulary for every family, counted by the `vision/` metrics, `review` and `plan`; which
    family names what, and which name wins when two apply: ``swift_ext/families/base.py``. A str
    subclass: it compares equal to, and serialises as, its value.
    """

    MAX_PIXELS = 'max_pixels'  # a pixel cap shrank it (ms-swift's --max_pixels, a row's, or the model's own cap)
    MIN_PIXELS = 'min_pixels'  # a pixel floor grew it (Qwen, GLM, PaddleOCR)
    LONGEST_EDGE = 'longest_edge'  # a cap on its longest side shrank it (Pixtral, Idefics3)
    MAX_SOFT_TOKENS = 'max_soft_tokens'  # a visual-token budget shrank it (Gemma 4)
    CANVAS_FIT = 'canvas_fit'  # shrunk (or stretched) into a fixed canvas, input size or tile grid
    UPSCALE = 'upscale'  # enlarged, no side shrunk, to a fixed input, canvas, tile grid or token budget

    def __str__(self) -> str:
        return self.value


class GeometryError(ValueError):
    """An image whose geometry cannot be computed: says which image, which rule, what value."""


class VideoError(GeometryError):
    """A video whose geometry cannot be computed: says which video, which rule, what value."""


class VideoClamp(str, Enum):
    """What changed a video's frame count or frame size beyond the model's own rounding (a video line's
    ``clamped``, several at once): the frame cap or floor, the per-frame pixel cap or floor, or the
    whole sequence's budget (qwen-vl-utils' ``MODEL_SEQ_LEN``) shrinking every frame."""

    MAX_FRAMES = 'max_frames'  # FPS_MAX_FRAMES (or a row's max_frames) cut the frames sampled
    MIN_FRAMES = 'min_frames'  # FPS_MIN_FRAMES raised them above the clip at FPS
    MAX_PIXELS = 'max_pixels'  # VIDEO_MAX_TOKEN_NUM (or a row's max_pixels) shrank each frame
    MIN_PIXELS = 'min_pixels'  # VIDEO_MIN_TOKEN_NUM grew each frame
    MODEL_SEQ_LEN = 'model_seq_len'  # the sequence budget over all frames shrank each frame

    def __str__(self) -> str:
        return self.value


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
    def scale(self) -> tuple[float, float]:
        """``(x, y)``: the factor each axis went through from the file to ``resized_*`` (below 1: shrunk)."""
        return self._scale()

    @property
    def max_scale(self) -> float:
        """The larger of ``scale``: how many times the most enlarged axis was blown up (1.0 or less: none).

        What a tool flags a large upscale with, whatever the clamp's name (an image pre-rescaled by
        ``--max_pixels`` and then enlarged to a fixed input is named ``max_pixels``).

        Example:
            >>> ImageGeometry(original_width=30, original_height=30, resized_width=336, resized_height=336,
            ...               num_tokens=1).max_scale
            11.2
        """
        return max(self._scale())

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
        as 0-1000), ``'norm1'`` (as 0-1), or the integer location bins ``'bins1000'`` (Florence-2)
        / ``'bins1024'`` (PaliGemma), as their reference code quantizes them (``BINS``).

        Example:
            >>> geo = ImageGeometry(original_width=640, original_height=480, resized_width=644,
            ...                     resized_height=476, num_tokens=391)
            >>> [round(v, 2) for v in geo.to_model_frame([64, 48, 320, 240], 'abs')]
            [64.4, 47.6, 322.0, 238.0]
            >>> [round(v, 6) for v in geo.to_model_frame([64, 48, 320, 240], 'norm1000')]
            [100.0, 100.0, 500.0, 500.0]
            >>> geo.to_model_frame([64, 48, 640, 240], 'bins1000')
            [100, 100, 999, 500]
        """
        sx, sy = self._scale()
        fx, fy = self._frame_scale(coords)
        x1, y1, x2, y2 = box
        out = [(x1 * sx + self.pad_left) * fx, (y1 * sy + self.pad_top) * fy,
               (x2 * sx + self.pad_left) * fx, (y2 * sy + self.pad_top) * fy]
        if coords in BINS:
            top, _, pick = BINS[coords]
            return [min(max(int(pick(v)), 0), top) for v in out]
        return out

    def from_model_frame(self, box: Sequence[float], coords: str) -> list:
        """Map a box the model wrote in ``coords`` back to original pixels (unclipped).

        Example:
            >>> geo = ImageGeometry(original_width=640, original_height=480, resized_width=644,
            ...                     resized_height=476, num_tokens=391)
            >>> [round(v, 6) for v in geo.from_model_frame([100, 100, 500, 500], 'norm1000')]
            [64.0, 48.0, 320.0, 240.0]
            >>> [round(v, 6) for v in geo.from_model_frame([100, 100, 500, 500], 'bins1000')]  # bin centres
            [64.32, 48.24, 320.32, 240.24]
        """
        sx, sy = self._scale()
        fx, fy = self._frame_scale(coords)
        x1, y1, x2, y2 = box
        if coords in BINS:
            offset = BINS[coords][1]
            x1, y1, x2, y2 = x1 + offset, y1 + offset, x2 + offset, y2 + offset
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


@dataclass(frozen=True)
class VideoGeometry:
    """What happened to one video between the user's file and the vision encoder.

    Times are seconds of the SOURCE video (``frame_times[i] = frame_indices[i] / video_fps``), the
    clip window (``video_start`` .. ``video_end``) included. The frames merge ``frames_per_step`` at
    a time (Qwen's temporal patch: a frame pair) into ``grid[0]`` steps of ``tokens_per_step`` tokens;
    ``step_times`` is each step's time (the mean of its frames). How the model is told time:
    ``timestamps``, the text the encode writes per step (Qwen3-VL ``'<1.3 seconds>'``), measured from
    ``timestamp_origin`` (0.0 in training; the clip's first sampled frame in ms-swift's vLLM mode);
    ``second_per_grid_ts``, Qwen2.5-VL's (and the Omni models') seconds per step. ``sampling_step``
    (``frames_per_step / sample_fps`` seconds) is the finest interval the model can tell apart.
    """

    original_width: int
    original_height: int
    video_fps: float
    total_frames: int
    video_start: float
    video_end: float
    start_frame: int
    end_frame: int
    frame_indices: tuple[int, ...]
    sample_fps: float
    frame_times: tuple[float, ...]
    step_times: tuple[float, ...]
    resized_width: int
    resized_height: int
    grid: tuple[int, int, int]  # (steps, patch rows, patch cols), as video_grid_thw
    tokens_per_step: int
    num_tokens: int
    sampling_step: float
    frames_per_step: int = 2
    second_per_grid_ts: float | None = None
    timestamps: tuple[str, ...] = ()
    timestamp_origin: float = 0.0
    padded_frames: int = 0  # image lists: copies of the last frame added to make the count even
    image_list: bool = False
    clamped: tuple[str, ...] = field(default=())

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    @property
    def grid_t(self) -> int:
        return self.grid[0]

    def frame_geometry(self) -> ImageGeometry:
        """One frame as an :class:`ImageGeometry` (every frame has the same size): boxes map through it."""
        return ImageGeometry(original_width=self.original_width, original_height=self.original_height,
                             resized_width=self.resized_width, resized_height=self.resized_height,
                             num_tokens=self.tokens_per_step, grid=(1, self.grid[1], self.grid[2]))

    def to_model_frame(self, box: Sequence[float], coords: str) -> list:
        """A box in original frame pixels mapped to what the model writes (see ImageGeometry)."""
        return self.frame_geometry().to_model_frame(box, coords)

    def from_model_frame(self, box: Sequence[float], coords: str) -> list:
        """A box the model wrote for a frame, mapped back to original frame pixels (unclipped)."""
        return self.frame_geometry().from_model_frame(box, coords)

    def nearest_frame(self, seconds: float) -> int:
        """The position (0-based, in ``frame_indices``) of the sampled frame nearest ``seconds``."""
        return min(range(self.num_frames), key=lambda i: abs(self.frame_times[i] - seconds))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = [str(v) if isinstance(v, Enum) else v for v in value]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoGeometry:
        names = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**values)


def check_side(side: str, value: Any, image: str) -> int:
    """``value`` as an image side: a GeometryError unless it is a positive integer (``side``: 'width' / 'height')."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GeometryError(f'{image}: `{side}` must be an integer, got {value!r}.')
    if value <= 0:
        raise GeometryError(f'{image}: `{side}` must be positive, got {value}.')
    return value


def fit_clamp(*, width: int, height: int, resized_width: int, resized_height: int,
              shrunk: Clamp = Clamp.CANVAS_FIT) -> Clamp | None:
    """The clamp of a resize to a size the model fixes (a canvas, an input size, a tile grid, a budget).

    ``UPSCALE`` where no side shrank and one grew; ``shrunk`` (``CANVAS_FIT`` unless the family's limit
    has its own name) where a side shrank, a stretch that shrinks one side and grows the other
    included; None where the size is unchanged.

    Example:
        >>> fit_clamp(width=30, height=30, resized_width=336, resized_height=336)
        <Clamp.UPSCALE: 'upscale'>
        >>> fit_clamp(width=2000, height=400, resized_width=896, resized_height=896)
        <Clamp.CANVAS_FIT: 'canvas_fit'>
    """
    if resized_width >= width and resized_height >= height:
        return None if (resized_width, resized_height) == (width, height) else Clamp.UPSCALE
    return shrunk


def fitted(geo: ImageGeometry, *, width: int, height: int) -> tuple[ImageGeometry, Clamp | None]:
    """``(geo, clamp)``: ``geo`` with the :func:`fit_clamp` of a ``width`` x ``height`` image resized to its size."""
    return geo, fit_clamp(width=width, height=height, resized_width=geo.resized_width,
                          resized_height=geo.resized_height)


def stretched(*, width: int, height: int, resized_width: int, resized_height: int,
              num_tokens: int) -> tuple[ImageGeometry, Clamp | None]:
    """Every image resized to one size the model fixes, aspect not kept (PaliGemma, Florence-2, GOT-OCR 2.0).

    Example:
        >>> geo, clamp = stretched(width=640, height=480, resized_width=224, resized_height=224, num_tokens=256)
        >>> geo.scale, clamp
        ((0.35, 0.4666666666666667), <Clamp.CANVAS_FIT: 'canvas_fit'>)
    """
    geo = ImageGeometry(original_width=width, original_height=height, resized_width=resized_width,
                        resized_height=resized_height, num_tokens=num_tokens)
    return geo, fit_clamp(width=width, height=height, resized_width=resized_width, resized_height=resized_height)


def patch_grid(*, width: int, height: int, resized_width: int, resized_height: int, patch_size: int, merge_size: int,
               num_tokens: int | None = None, **fields: Any) -> ImageGeometry:
    """A ``width`` x ``height`` image resized and cut into ``patch_size`` patches, ``merge_size**2`` of them a
    token unless ``num_tokens`` says otherwise (the Qwen-style vision towers: Qwen, GLM, ERNIE, PaddleOCR, ...).

    Example:
        >>> patch_grid(width=640, height=480, resized_width=644, resized_height=476, patch_size=14,
        ...            merge_size=2).grid
        (1, 34, 46)
    """
    grid = (1, resized_height // patch_size, resized_width // patch_size)
    if num_tokens is None:
        num_tokens = grid[1] * grid[2] // merge_size ** 2
    return ImageGeometry(original_width=width, original_height=height, resized_width=resized_width,
                         resized_height=resized_height, grid=grid, num_tokens=num_tokens, **fields)


# --- shared rounding: the steps several processors take alike -------------------------------------
def round_by_factor(number: float, factor: int) -> int:
    """The multiple of ``factor`` nearest ``number`` (Python's round: halves to even)."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def round_within(*, width: int, height: int, factor: int, min_pixels: float, max_pixels: float, frames: int = 1,
                 min_side: int = 0) -> tuple[tuple[int, int], Clamp | None]:
    """Sides rounded to multiples of ``factor``, rescaled (aspect kept) into ``[min_pixels, max_pixels]``.

    The step qwen-vl-utils' ``smart_resize`` and transformers' GLM-4.1V and PaddleOCR-VL variants
    share: pixels are counted over ``frames`` (GLM counts two), a side shrunk by the cap is at
    least ``min_side`` (GLM, PaddleOCR: ``factor``; qwen-vl-utils: 0, which its caller refuses).
    Returns ``((width, height), clamp)``, ``clamp`` naming the limit that rescaled the image.

    Example:
        >>> round_within(width=640, height=480, factor=28, min_pixels=3136, max_pixels=12845056)
        ((644, 476), None)
        >>> round_within(width=1920, height=1080, factor=28, min_pixels=3136, max_pixels=50176)
        ((280, 168), <Clamp.MAX_PIXELS: 'max_pixels'>)
    """
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if frames * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        return ((max(min_side, floor_by_factor(width / beta, factor)),
                 max(min_side, floor_by_factor(height / beta, factor))), Clamp.MAX_PIXELS)
    if frames * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        return (ceil_by_factor(width * beta, factor), ceil_by_factor(height * beta, factor)), Clamp.MIN_PIXELS
    return (w_bar, h_bar), None


def zero_floor_smart_resize(*, width: int, height: int, factor: int, min_pixels: float, max_pixels: float,
                            max_ratio: float = 200, name: str = 'image') -> tuple[tuple[int, int], Clamp | None]:
    """The ``smart_resize`` transformers' ERNIE-4.5-VL and HunYuanVL image processors copy, as ``((w, h), clamp)``.

    ``round_within`` but for its first rounding, which has no floor: a side under half of ``factor``
    rounds to 0, and 0 pixels then count as under ``min_pixels`` (both sides scaled up); a side the cap
    shrinks is at least ``factor``. Refused (GeometryError) where the processor raises: an aspect ratio over
    ``max_ratio``, or a size it would round to a zero side (only with ``min_pixels`` 0).

    Example:
        >>> zero_floor_smart_resize(width=640, height=480, factor=28, min_pixels=3136, max_pixels=4842768)
        ((644, 476), None)
        >>> zero_floor_smart_resize(width=10, height=1000, factor=28, min_pixels=3136, max_pixels=4842768)
        ((28, 560), <Clamp.MIN_PIXELS: 'min_pixels'>)
    """
    check_side('width', width, name)
    check_side('height', height, name)
    ratio = max(width, height) / min(width, height)
    if ratio > max_ratio:
        raise GeometryError(f'{name}: the image processor refuses an aspect ratio over {max_ratio}, '
                            f'got {ratio:.1f} ({width}x{height}).')
    h_bar, w_bar = round_by_factor(height, factor), round_by_factor(width, factor)
    clamp = None
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, floor_by_factor(height / beta, factor))
        w_bar = max(factor, floor_by_factor(width / beta, factor))
        clamp = Clamp.MAX_PIXELS
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = ceil_by_factor(height * beta, factor), ceil_by_factor(width * beta, factor)
        clamp = Clamp.MIN_PIXELS
    if h_bar <= 0 or w_bar <= 0:
        raise GeometryError(f'{name}: {width}x{height} rounds to a zero side ({w_bar}x{h_bar}) with factor {factor} '
                            f'and min_pixels {min_pixels}.')
    return (w_bar, h_bar), clamp


# --- ms-swift's own pre-rescale -------------------------------------------------------------------------
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


def updated(geo: ImageGeometry, **changes: Any) -> ImageGeometry:
    """``geo`` with ``changes``; ``geo`` itself where they change nothing (the encode agreed with the prediction)."""
    for name, value in changes.items():
        if getattr(geo, name) != value:
            return replace(geo, **changes)
    return geo
