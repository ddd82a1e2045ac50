"""Video geometry for the Qwen-VL templates: which frames are sampled, their times, their size, their tokens.

Arithmetic only (no torch, numpy, PIL or swift at import), reproducing qwen-vl-utils 0.0.14's
``fetch_video`` as ms-swift 4.6's ``Qwen2VLTemplate.replace_tag`` calls it, and the processors'
``video_grid_thw`` / time encoding that follow. Tests pin every function to the real libraries.

What happens to a video file (decord / torchcodec readers):
1. the clip window: ``video_start`` / ``video_end`` seconds -> frames ``ceil(start * fps)`` ..
   ``floor(end * fps)`` (:func:`frame_range`);
2. the frame count: ``clip_frames / video_fps * FPS`` clamped to ``[FPS_MIN_FRAMES, FPS_MAX_FRAMES]``
   and the clip, floored to even; or a row's ``nframes`` rounded to even (:func:`sample_count`);
3. the frames: ``torch.linspace(start, end, n).round()`` in float32 (:func:`frame_indices`);
4. one size for every frame: ``smart_resize`` under a per-frame budget of ``VIDEO_MAX_TOKEN_NUM``
   tokens, lowered when ``MODEL_SEQ_LEN`` cannot hold all frames (:func:`frame_size`);
5. frame pairs merge (temporal patch 2): ``grid_t = n / 2``; tokens ``grid_t * (H/f) * (W/f)``.
An image-list video (a list of frame files) keeps every frame, pads to even by repeating the last,
and takes ``FPS`` as its sample rate (:func:`predict_image_list_geometry`).
"""
from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .geometry import GeometryError, VideoClamp, VideoError, VideoGeometry, check_side, round_within, updated

# qwen-vl-utils 0.0.14 defaults (vision_process.py), each overridable by the environment variable
# of the same upper-case name when ms-swift's `patch_qwen_vl_utils` runs (at the processor's load).
FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
VIDEO_MIN_TOKEN_NUM = 128
VIDEO_MAX_TOKEN_NUM = 768
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384
SPATIAL_MERGE_SIZE = 2
MAX_RATIO = 200
MODEL_SEQ_LEN = 128000  # read once, when qwen_vl_utils is imported; ms-swift does not patch it
TEMPORAL_PATCH_SIZE = 2  # the processors' frame pairing (Qwen2-VL .. Qwen3.5, the Omni models)
# ms-swift's template `version` -> the patch size its replace_tag hands fetch_video (qwen_omni_utils' for
# the Omni models: the same source). How the model is told time: Qwen2-VL not at all; Qwen2.5-VL and
# the Omni models by seconds per pair (`second_per_grid_ts` / `video_second_per_grid`); Qwen3-VL and
# Qwen3.5 by `<t seconds>` text before each pair.
QWEN_VERSIONS = {'v2': 14, 'v2_5': 14, 'v3': 16, 'omni_v2_5': 14, 'omni_v3': 16}
SECONDS_PER_STEP_VERSIONS = ('v2_5', 'omni_v2_5', 'omni_v3')
MODES = ('train', 'transformers', 'vllm', 'rlhf', 'pt')


def _f32(value: float) -> float:
    return struct.unpack('f', struct.pack('f', value))[0]


# --- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoSettings:
    """The qwen-vl-utils globals a video encode reads, after ms-swift has patched them."""

    patch_size: int = 14
    spatial_merge_size: int = SPATIAL_MERGE_SIZE
    frame_factor: int = FRAME_FACTOR
    fps: float = FPS
    fps_min_frames: int = FPS_MIN_FRAMES
    fps_max_frames: int = FPS_MAX_FRAMES
    video_min_token_num: int = VIDEO_MIN_TOKEN_NUM
    video_max_token_num: int = VIDEO_MAX_TOKEN_NUM
    image_min_token_num: int = IMAGE_MIN_TOKEN_NUM
    image_max_token_num: int = IMAGE_MAX_TOKEN_NUM
    max_ratio: int = MAX_RATIO
    model_seq_len: int = MODEL_SEQ_LEN

    @property
    def factor(self) -> int:
        """Pixels per merged token side: ``patch_size * spatial_merge_size`` (28 or 32)."""
        return self.patch_size * self.spatial_merge_size


# (env name, field, type): the keys `patch_qwen_vl_utils` reads with `get_env_args`.
_PATCHED = (('FPS', 'fps', float), ('FRAME_FACTOR', 'frame_factor', int), ('FPS_MIN_FRAMES', 'fps_min_frames', int),
            ('FPS_MAX_FRAMES', 'fps_max_frames', int), ('VIDEO_MIN_TOKEN_NUM', 'video_min_token_num', int),
            ('VIDEO_MAX_TOKEN_NUM', 'video_max_token_num', int), ('IMAGE_MIN_TOKEN_NUM', 'image_min_token_num', int),
            ('IMAGE_MAX_TOKEN_NUM', 'image_max_token_num', int), ('SPATIAL_MERGE_SIZE', 'spatial_merge_size', int),
            ('MAX_RATIO', 'max_ratio', int))
# `compat_qwen_vl_utils`: a pixel limit becomes a token count unless the token count is set itself.
_PIXELS_TO_TOKENS = (('MAX_PIXELS', 'IMAGE_MAX_TOKEN_NUM'), ('MIN_PIXELS', 'IMAGE_MIN_TOKEN_NUM'),
                     ('VIDEO_MAX_PIXELS', 'VIDEO_MAX_TOKEN_NUM'), ('VIDEO_MIN_PIXELS', 'VIDEO_MIN_TOKEN_NUM'))


def _env_number(env: Mapping[str, str], name: str, kind: type):
    text = env[name]
    try:
        return kind(text)
    except ValueError:
        what = 'an integer' if kind is int else 'a number'
        raise VideoError(f'environment variable {name} must be {what}, got {text!r}.') from None


def video_settings(*, patch_size: int = 14, env: Mapping[str, str] | None = None,
                   defaults: Mapping[str, str] | None = None) -> VideoSettings:
    """The settings ms-swift's Qwen loaders give qwen-vl-utils for a model of ``patch_size``.

    Precedence, as ms-swift 4.6 applies it: ``VIDEO_MAX_TOKEN_NUM`` (and the other token counts)
    set in the environment win; else ``VIDEO_MAX_PIXELS`` // (patch_size * SPATIAL_MERGE_SIZE)**2
    (``compat_qwen_vl_utils``); else qwen-vl-utils' default. ``defaults`` are a loader's own
    ``os.environ.setdefault`` values (Qwen3-VL embedding / reranker: ``FPS=1``, ``FPS_MAX_FRAMES=64``).
    ``MODEL_SEQ_LEN`` is read as ``int(float(...))``, as qwen-vl-utils does at import.
    Note: ms-swift patches the module once per process, so the first model loaded fixes them.
    """
    env = dict(os.environ if env is None else env)
    for name, value in (defaults or {}).items():
        env.setdefault(name, value)
    merge = int(env.get('SPATIAL_MERGE_SIZE', '2'))  # compat reads it with int() before the patch does
    for source, target in _PIXELS_TO_TOKENS:
        if env.get(source) and not env.get(target):
            env[target] = str(_env_number(env, source, int) // (patch_size * merge) ** 2)
    values: dict[str, Any] = {'patch_size': patch_size}
    for name, attr, kind in _PATCHED:
        if env.get(name) is not None:
            values[attr] = _env_number(env, name, kind)
    if env.get('MODEL_SEQ_LEN') is not None:
        values['model_seq_len'] = int(_env_number(env, 'MODEL_SEQ_LEN', float))
    return VideoSettings(**values)


def settings_of_module(vision_process: Any, *, patch_size: int) -> VideoSettings:
    """The settings a loaded ``qwen_vl_utils.vision_process`` module really holds (after ms-swift's patch).

    What a recorder should read inside a run: ms-swift patches the module once per process, so the
    first model loaded fixes the values, whatever the environment says later.
    """
    values = {attr: getattr(vision_process, name) for name, attr, _ in _PATCHED if hasattr(vision_process, name)}
    values['model_seq_len'] = vision_process.MODEL_SEQ_LEN
    return VideoSettings(patch_size=patch_size, **values)

# --- frames ------------------------------------------------------------------------------------
def frame_range(*, total_frames: int, video_fps: float, video_start: float | None = None,
                video_end: float | None = None, name: str = 'video') -> tuple[int, int, int]:
    """``(start_frame, end_frame, clip_frames)`` of the clip window, as ``calculate_video_frame_range``."""
    if not video_fps > 0:
        raise VideoError(f'{name}: the frame rate must be positive, got {video_fps!r}.')
    if total_frames <= 0:
        raise VideoError(f'{name}: the frame count must be positive, got {total_frames!r}.')
    if video_start is None and video_end is None:
        return 0, total_frames - 1, total_frames
    max_duration = total_frames / video_fps
    start_frame, end_frame = 0, total_frames - 1
    if video_start is not None:
        start_frame = math.ceil(max(0.0, min(video_start, max_duration)) * video_fps)
    if video_end is not None:
        end_frame = min(math.floor(max(0.0, min(video_end, max_duration)) * video_fps), total_frames - 1)
    if start_frame >= end_frame:
        raise VideoError(f'{name}: the clip video_start={video_start}, video_end={video_end} holds no two frames '
                         f'(frames {start_frame}..{end_frame} of {total_frames} at {video_fps} fps).')
    return start_frame, end_frame, end_frame - start_frame + 1


def _round_even(number: float, factor: int) -> int:
    return round(number / factor) * factor


def sample_count(*, clip_frames: int, video_fps: float, settings: VideoSettings,
                 row: Mapping[str, Any] | None = None, name: str = 'video') -> int:
    """How many frames ``smart_nframes`` samples from a clip of ``clip_frames`` frames.

    ``row`` holds the row's ``chat_template_kwargs``: ``nframes``, or ``fps`` / ``min_frames`` /
    ``max_frames``; ``nframes`` together with ``fps`` is refused, as qwen-vl-utils refuses it.
    """
    row = row or {}
    factor = settings.frame_factor
    if 'fps' in row and 'nframes' in row:
        raise VideoError(f'{name}: chat_template_kwargs give both `fps` and `nframes`; qwen-vl-utils accepts one.')
    if 'nframes' in row:
        nframes = _round_even(row['nframes'], factor)
    else:
        fps = row.get('fps', settings.fps)
        min_frames = math.ceil(row.get('min_frames', settings.fps_min_frames) / factor) * factor
        max_frames = math.floor(row.get('max_frames', min(settings.fps_max_frames, clip_frames)) / factor) * factor
        nframes = clip_frames / video_fps * fps
        nframes = min(min(max(nframes, min_frames), max_frames), clip_frames)
        nframes = math.floor(nframes / factor) * factor
    if not factor <= nframes <= clip_frames:
        raise VideoError(f'{name}: the number of frames to sample must be in [{factor}, {clip_frames}] '
                         f"(the clip's frames), got {nframes}.")
    return int(nframes)


def _frame_clamp(count: int, *, clip: int, video_fps: float, settings: VideoSettings,
                 row: Mapping[str, Any]) -> tuple[str, ...]:
    """``('max_frames',)`` when FPS_MAX_FRAMES (or a row's max_frames) cut the count, ``('min_frames',)``
    when FPS_MIN_FRAMES raised it; ``()`` when the count is the clip at FPS (or all its frames)."""
    factor = settings.frame_factor
    wanted = min(clip / video_fps * row.get('fps', settings.fps), clip)
    if count < math.floor(wanted / factor) * factor:
        return (VideoClamp.MAX_FRAMES,)
    if count > wanted:
        return (VideoClamp.MIN_FRAMES,)
    return ()


def frame_indices(*, start_frame: int, end_frame: int, count: int) -> tuple[int, ...]:
    """``torch.linspace(start, end, count).round().long()``: torch's float32 CPU kernel, reproduced.

    The kernel fills the first half as ``start + step * i`` and the second as
    ``end - step * (count - 1 - i)``; built for AVX2 it contracts each into one fused multiply-add,
    so the exact value is rounded once to float32 (in double the product and sum are exact for any
    frame count below 2**24). ``round`` is half to even in both torch and Python.
    """
    start, end = _f32(start_frame), _f32(end_frame)
    if count == 1:
        return (round(start),)
    step = _f32((end - start) / _f32(count - 1))
    half = count // 2
    return tuple(round(_f32(start + step * i)) if i < half else round(_f32(end - step * (count - 1 - i)))
                 for i in range(count))


def _resize(*, width: int, height: int, factor: int, min_pixels: float, max_pixels: float, max_ratio: float,
            name: str) -> tuple[int, int]:
    """qwen-vl-utils' ``smart_resize`` as ``(width, height)``: its refusals (an assert, a ValueError, a zero
    side) raised as :class:`VideoError`. The rounding is the shared ``geometry.round_within``."""
    try:
        check_side('width', width, name)
        check_side('height', height, name)
    except GeometryError as exc:
        raise VideoError(str(exc)) from None
    if max_pixels < min_pixels:
        raise VideoError(f'{name}: `max_pixels` must be >= `min_pixels`, '
                         f'got max_pixels={max_pixels}, min_pixels={min_pixels}.')
    ratio = max(height, width) / min(height, width)
    if ratio > max_ratio:
        raise VideoError(f'{name}: aspect ratio must be at most {max_ratio}, got {ratio:.1f} ({width}x{height}).')
    (w_bar, h_bar), _ = round_within(width=width, height=height, factor=factor, min_pixels=min_pixels,
                                     max_pixels=max_pixels)
    if h_bar <= 0 or w_bar <= 0:
        raise VideoError(f'{name}: resizing {width}x{height} under max_pixels={max_pixels} '
                         f'with factor {factor} gives a zero side ({w_bar}x{h_bar}).')
    return w_bar, h_bar


def frame_size(*, width: int, height: int, nframes: int, settings: VideoSettings,
               row: Mapping[str, Any] | None = None, name: str = 'video') -> tuple[int, int, tuple[str, ...]]:
    """``(resized_width, resized_height, clamped)``: one size for every frame, as ``fetch_video`` picks it.

    Per-frame budget ``max(min(VIDEO_MAX_TOKEN_NUM * f**2, total_pixels / nframes * 2),
    int(min_pixels * 1.05))``, where ``total_pixels`` defaults to ``MODEL_SEQ_LEN * f**2 * 0.9``;
    a row's ``max_pixels`` only lowers it. A row's ``resized_width`` and ``resized_height`` win
    (rounded to the factor under the IMAGE limits, as ``fetch_video`` does). ``clamped`` names
    what shrank or grew the frames beyond rounding: ``max_pixels`` / ``min_pixels`` / ``model_seq_len``.
    """
    row = row or {}
    f = settings.factor
    if 'resized_height' in row and 'resized_width' in row:
        rw, rh = _resize(width=_int_side(row['resized_width'], 'resized_width', name),
                         height=_int_side(row['resized_height'], 'resized_height', name), factor=f,
                         min_pixels=settings.image_min_token_num * f * f,
                         max_pixels=settings.image_max_token_num * f * f, max_ratio=settings.max_ratio, name=name)
        return rw, rh, ()
    min_pixels = row.get('min_pixels', settings.video_min_token_num * f * f)
    total_pixels = row.get('total_pixels', settings.model_seq_len * f * f * 0.9)
    frame_cap = settings.video_max_token_num * f * f
    max_pixels = max(min(frame_cap, total_pixels / nframes * settings.frame_factor), int(min_pixels * 1.05))
    max_pixels = min(row.get('max_pixels', max_pixels), max_pixels)
    rw, rh = _resize(width=width, height=height, factor=f, min_pixels=min_pixels, max_pixels=max_pixels,
                     max_ratio=settings.max_ratio, name=name)
    rounded = (max(f, _round_even(width, f)), max(f, _round_even(height, f)))
    clamped: tuple[str, ...] = ()
    if rw * rh < rounded[0] * rounded[1]:
        # The sequence budget binds when it is below the per-frame cap (even where the floor of
        # 1.05 * min_pixels then lifts it) and no row max_pixels is lower still.
        seq_cap = total_pixels / nframes * settings.frame_factor
        by_sequence = seq_cap < frame_cap and row.get('max_pixels', math.inf) >= max(seq_cap, int(min_pixels * 1.05))
        clamped = (VideoClamp.MODEL_SEQ_LEN if by_sequence else VideoClamp.MAX_PIXELS,)
    elif rw * rh > rounded[0] * rounded[1]:
        clamped = (VideoClamp.MIN_PIXELS,)
    return rw, rh, clamped


def _int_side(value: Any, what: str, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise VideoError(f'{name}: `{what}` must be a positive integer, got {value!r}.')
    return value


def _time_encoding(*, version: str, mode: str, indices: Sequence[int], fps: float,
                   sample_fps: float) -> tuple[float | None, tuple[str, ...], float]:
    """``(second_per_grid_ts, timestamps, timestamp_origin)`` for an ms-swift template ``version``."""
    if version in SECONDS_PER_STEP_VERSIONS:
        return TEMPORAL_PATCH_SIZE / sample_fps, (), 0.0
    if version != 'v3':
        return None, (), 0.0
    origin_index = indices[0] if mode == 'vllm' and indices[0] > 0 else 0
    shifted = [i - origin_index for i in indices]
    if len(shifted) % TEMPORAL_PATCH_SIZE:
        shifted += [shifted[-1]] * (TEMPORAL_PATCH_SIZE - len(shifted) % TEMPORAL_PATCH_SIZE)
    times = [i / fps for i in shifted]  # Qwen3VLProcessor._calculate_timestamps
    pairs = [(times[i] + times[i + TEMPORAL_PATCH_SIZE - 1]) / 2 for i in range(0, len(times), TEMPORAL_PATCH_SIZE)]
    return None, tuple(f'<{t:.1f} seconds>' for t in pairs), origin_index / fps


def _check_version(version: str, mode: str) -> None:
    if version not in QWEN_VERSIONS:
        raise ValueError(f'`version` should be one of {sorted(QWEN_VERSIONS)}, got {version!r}.')
    if mode not in MODES:
        raise ValueError(f'`mode` should be one of {list(MODES)}, got {mode!r}.')


def _assemble(*, width: int, height: int, video_fps: float, total_frames: int, window: tuple[float, float],
              frames: tuple[int, int], indices: tuple[int, ...], sample_fps: float, times_fps: float,
              settings: VideoSettings, row: Mapping[str, Any], version: str, mode: str, name: str,
              padded: int = 0, image_list: bool = False, clamped: tuple[str, ...] = (),
              original: tuple[int, int] | None = None) -> VideoGeometry:
    # `width` x `height` is what reaches the video resize; `original` the file's size where it differs.
    rw, rh, size_clamp = frame_size(width=width, height=height, nframes=len(indices), settings=settings, row=row,
                                    name=name)
    patch, merge = settings.patch_size, settings.spatial_merge_size
    grid = (math.ceil(len(indices) / TEMPORAL_PATCH_SIZE), rh // patch, rw // patch)
    tokens_per_step = grid[1] * grid[2] // merge ** 2
    frame_times = tuple(i / times_fps for i in indices)
    step_times = tuple((frame_times[i] + frame_times[min(i + 1, len(indices) - 1)]) / 2
                       for i in range(0, len(indices), TEMPORAL_PATCH_SIZE))
    spg, stamps, origin = _time_encoding(version=version, mode=mode, indices=indices, fps=times_fps,
                                         sample_fps=sample_fps)
    original_width, original_height = original or (width, height)
    return VideoGeometry(
        original_width=original_width, original_height=original_height, video_fps=video_fps, total_frames=total_frames,
        video_start=window[0], video_end=window[1], start_frame=frames[0], end_frame=frames[1],
        frame_indices=indices, sample_fps=sample_fps, frame_times=frame_times, step_times=step_times,
        resized_width=rw, resized_height=rh, grid=grid, tokens_per_step=tokens_per_step,
        num_tokens=grid[0] * tokens_per_step, sampling_step=TEMPORAL_PATCH_SIZE / sample_fps,
        frames_per_step=TEMPORAL_PATCH_SIZE,
        second_per_grid_ts=spg, timestamps=stamps, timestamp_origin=origin, padded_frames=padded,
        image_list=image_list, clamped=clamped + size_clamp)


def with_observed(geo: VideoGeometry, *, version: str, mode: str, settings: VideoSettings, width: int,
                  height: int, frame_indices: Sequence[int] | None = None, sample_fps: float | None = None,
                  grid: Sequence[int] | None = None, num_tokens: int | None = None,
                  timestamps: Sequence[str] | None = None, second_per_grid_ts: float | None = None) -> VideoGeometry:
    """``geo`` (a prediction) with what an encode showed of the video, the values that follow recomputed.

    ``width`` x ``height``: each frame as handed on; ``frame_indices``: the source frames (None: the
    prediction's); ``grid`` / ``num_tokens``: the processor's (None: from the frames and their size);
    ``timestamps`` / ``second_per_grid_ts``: the time encoding as the encode wrote it. ``geo`` itself
    where nothing differs.
    """
    indices = geo.frame_indices if frame_indices is None else tuple(int(i) for i in frame_indices)
    rate = geo.sample_fps if sample_fps is None else sample_fps
    patch, merge = settings.patch_size, settings.spatial_merge_size
    grid = (math.ceil(len(indices) / TEMPORAL_PATCH_SIZE), height // patch, width // patch) if grid is None \
        else tuple(int(v) for v in grid)
    per_step = grid[1] * grid[2] // merge ** 2
    changes: dict[str, Any] = {'resized_width': width, 'resized_height': height, 'grid': grid,
                               'tokens_per_step': per_step,
                               'num_tokens': grid[0] * per_step if num_tokens is None else int(num_tokens)}
    if indices != geo.frame_indices or rate != geo.sample_fps:
        times = tuple(i / geo.video_fps for i in indices)
        spg, stamps, origin = _time_encoding(version=version, mode=mode, indices=indices, fps=geo.video_fps,
                                             sample_fps=rate)
        changes.update(frame_indices=indices, frame_times=times, sample_fps=rate,
                       step_times=tuple((times[i] + times[min(i + 1, len(times) - 1)]) / 2
                                        for i in range(0, len(times), TEMPORAL_PATCH_SIZE)),
                       sampling_step=TEMPORAL_PATCH_SIZE / rate, second_per_grid_ts=spg, timestamps=stamps,
                       timestamp_origin=origin)
    if timestamps is not None:
        changes['timestamps'] = tuple(timestamps)
    if second_per_grid_ts is not None:
        changes['second_per_grid_ts'] = float(second_per_grid_ts)
    return updated(geo, **changes)


def predict_video_geometry(*, width: int, height: int, total_frames: int, video_fps: float,
                           version: str = 'v2_5', mode: str = 'train', settings: VideoSettings | None = None,
                           row_kwargs: Mapping[str, Any] | None = None, name: str = 'video') -> VideoGeometry:
    """The geometry of a video file's encode, from its header values alone.

    Args:
        width, height: the decoded frame size; total_frames, video_fps: as the reader reports them
            (see ``swift_ext.video_io.read_video_header``).
        version: the ms-swift template's ``version``: ``'v2'`` (Qwen2-VL), ``'v2_5'`` (Qwen2.5-VL,
            MiMo-VL), ``'v3'`` (Qwen3-VL, Qwen3.5).
        mode: the template's mode; ``'vllm'`` measures Qwen3-VL timestamps from the clip's first frame.
        settings: from :func:`video_settings` (default: the process environment, the version's patch).
        row_kwargs: the row's ``chat_template_kwargs``.

    Raises:
        VideoError: a value qwen-vl-utils would refuse (the message names the video and the rule).
    """
    _check_version(version, mode)
    settings = settings or video_settings(patch_size=QWEN_VERSIONS[version])
    row = dict(row_kwargs or {})
    start, end, clip = frame_range(total_frames=total_frames, video_fps=video_fps, video_start=row.get('video_start'),
                                   video_end=row.get('video_end'), name=name)
    count = sample_count(clip_frames=clip, video_fps=video_fps, settings=settings, row=row, name=name)
    clamped = () if 'nframes' in row else _frame_clamp(count, clip=clip, video_fps=video_fps, settings=settings,
                                                        row=row)
    duration = total_frames / video_fps
    window = (max(0.0, min(row['video_start'], duration)) if row.get('video_start') is not None else 0.0,
              max(0.0, min(row['video_end'], duration)) if row.get('video_end') is not None else duration)
    return _assemble(width=width, height=height, video_fps=video_fps, total_frames=total_frames, window=window,
                     frames=(start, end), indices=frame_indices(start_frame=start, end_frame=end, count=count),
                     sample_fps=count / max(clip, 1e-6) * video_fps, times_fps=video_fps, settings=settings,
                     row=row, version=version, mode=mode, name=name, clamped=clamped)


def image_list_frame_size(*, width: int, height: int, settings: VideoSettings,
                          row: Mapping[str, Any] | None = None, name: str = 'frame') -> tuple[int, int]:
    """The size ``fetch_image`` gives one frame of an image-list video, before the video resize.

    qwen-vl-utils 0.0.14 calls ``fetch_image(frame, image_factor)``, passing the factor where the
    patch size belongs, so the frame is rounded to twice the factor (56 or 64) under the IMAGE limits.
    """
    row = row or {}
    f = settings.factor * SPATIAL_MERGE_SIZE
    if 'resized_height' in row and 'resized_width' in row:
        return _resize(width=_int_side(row['resized_width'], 'resized_width', name),
                       height=_int_side(row['resized_height'], 'resized_height', name), factor=f,
                       min_pixels=settings.image_min_token_num * f * f,
                       max_pixels=settings.image_max_token_num * f * f, max_ratio=settings.max_ratio, name=name)
    return _resize(width=width, height=height, factor=f,
                   min_pixels=row.get('min_pixels', settings.image_min_token_num * f * f),
                   max_pixels=row.get('max_pixels', settings.image_max_token_num * f * f),
                   max_ratio=settings.max_ratio, name=name)


def predict_image_list_geometry(*, sizes: Sequence[tuple[int, int]], version: str = 'v2_5', mode: str = 'train',
                                settings: VideoSettings | None = None, row_kwargs: Mapping[str, Any] | None = None,
                                name: str = 'video') -> VideoGeometry:
    """The geometry of an image-list video: ``sizes`` is each frame file's ``(width, height)``.

    Every frame is kept; an odd count is padded with a copy of the last frame; the sample rate is
    ``FPS`` (ms-swift sets ``sample_fps`` to it), which is also the times' frame rate. The
    ``original_*`` size is the first frame file's (boxes map from it).
    """
    _check_version(version, mode)
    settings = settings or video_settings(patch_size=QWEN_VERSIONS[version])
    row = dict(row_kwargs or {})
    if not sizes:
        raise VideoError(f'{name}: an image-list video needs at least one frame, got none.')
    resized = {image_list_frame_size(width=w, height=h, settings=settings, row=row, name=f'{name} frame {i}')
               for i, (w, h) in enumerate(sizes)}
    if len(resized) > 1:
        raise VideoError(f'{name}: the frames of an image-list video must resize to one size (torch.stack), '
                         f'got {sorted(resized)}.')
    (width, height), = resized
    count = math.ceil(len(sizes) / settings.frame_factor) * settings.frame_factor
    sample_fps = settings.fps
    indices = tuple(range(count))
    return _assemble(width=width, height=height, video_fps=sample_fps, total_frames=count,
                     window=(0.0, count / sample_fps), frames=(0, count - 1), indices=indices, sample_fps=sample_fps,
                     times_fps=sample_fps, settings=settings, row=row, version=version, mode=mode, name=name,
                     padded=count - len(sizes), image_list=True, original=tuple(sizes[0]))
