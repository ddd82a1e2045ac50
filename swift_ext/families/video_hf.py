"""Video geometry for families whose HF video processor samples the frames itself (GLM-4.5V, Gemma 4,
MiniCPM-V 4.6 / 4.7, InternVL-hf): a mixin for their Family classes.

ms-swift hands these processors the video (a path, or every frame transformers' PyAV loader decoded) and
the processor's own ``sample_frames`` picks the frames from the video's metadata: PyAV's header frame count
and average rate (``swift_ext.video_io`` reads the same numbers as decord does). So the frames sampled are
that function's answer on the header's metadata (the live processor's, with the arguments ms-swift passes);
their number, their tokens, their size and the time text the model reads are then read from the encode by
each family's ``video_frames`` (token runs, grids, the text between them). There is no prediction without
the model's processor (rewards in a vLLM server run get None for such videos), and engine-mode encodes
(vLLM) are not recorded: the engine samples and resizes there.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..geometry import VideoGeometry
from .encoded import as_numpy, token_spans, tolist

ENGINE_MODES = ('vllm', 'lmdeploy', 'sglang')


def sampled_geometry(*, width: int, height: int, total_frames: int, video_fps: float, indices: Sequence[int],
                     frames_per_step: int) -> VideoGeometry:
    """The frames a processor sampled, before the encode is read: each frame's size and tokens unknown (0)."""
    indices = tuple(int(i) for i in indices)
    times = tuple(i / video_fps for i in indices)
    steps = -(-len(indices) // frames_per_step)
    step_times = tuple(sum(times[i:i + frames_per_step]) / len(times[i:i + frames_per_step])
                       for i in range(0, len(times), frames_per_step))
    duration = total_frames / video_fps
    sample_fps = len(indices) / duration if duration else 0.0
    return VideoGeometry(
        original_width=width, original_height=height, video_fps=video_fps, total_frames=total_frames,
        video_start=0.0, video_end=duration, start_frame=0, end_frame=total_frames - 1, frame_indices=indices,
        sample_fps=sample_fps, frame_times=times, step_times=step_times, resized_width=0, resized_height=0,
        grid=(steps, 0, 0), tokens_per_step=0, num_tokens=0,
        sampling_step=frames_per_step / sample_fps if sample_fps else 0.0, frames_per_step=frames_per_step)


def frames_read(geo: VideoGeometry, *, resized: tuple[int, int], grid: tuple[int, int, int], tokens: Sequence[int],
                timestamps: Sequence[str] = ()) -> VideoGeometry:
    """``geo`` (the sampled frames) with what the encode shows: each frame's size, the grid, tokens per step."""
    from dataclasses import replace
    per_step = tokens[0] if tokens else 0
    return replace(geo, resized_width=int(resized[0]), resized_height=int(resized[1]), grid=tuple(int(v) for v in grid),
                   tokens_per_step=int(per_step), num_tokens=int(sum(tokens)), timestamps=tuple(timestamps))


def runs_between(ids: list, token: int, begin: int | None = None, end: int | None = None) -> list[list[tuple]]:
    """The runs of ``token`` grouped by the ``begin`` .. ``end`` blocks they lie in (one group when none)."""
    spans = token_spans(ids, token)
    if begin is None:
        return [spans] if spans else []
    starts = [i for i, t in enumerate(ids) if t == begin]
    ends = [i for i, t in enumerate(ids) if t == end]
    return [[s for s in spans if a < s[0] < b] for a, b in zip(starts, ends, strict=False)]


def position_grid(positions: Any, first: int) -> tuple[int, int] | None:
    """``(rows, cols)`` of patches of frame ``first`` in ``*_position_ids`` ([frames, patches, (x, y)], -1: padding)."""
    array = as_numpy(positions)
    if array is None or array.ndim != 3 or first >= array.shape[0]:
        return None
    frame = array[first]
    return int(frame[:, 1].max()) + 1, int(frame[:, 0].max()) + 1


def split_runs(runs: list, counts: list, per_frame: int = 1) -> list:
    """``runs`` (token runs, in order) cut into one list per video of ``counts[i] * per_frame`` runs; a
    video whose runs are not all there (or whose count is unknown) gets None, and so do those after it."""
    out, at = [], 0
    for count in counts:
        if count is None or at + count * per_frame > len(runs):
            out.extend([None] * (len(counts) - len(out)))
            break
        out.append(runs[at:at + count * per_frame])
        at += count * per_frame
    return out


def stamps(template: Any, ids: list, runs: Sequence[tuple[int, int]], pattern: re.Pattern, *,
           after: bool = False, stop: int | None = None) -> list[str]:
    """The time text ``pattern`` finds next to each run: in the (at most 32) tokens before it, or with
    ``after`` between it and the next run (the last: up to ``stop``); '' where there is none."""
    out = []
    for k, (start, length) in enumerate(runs):
        if after:
            last = start + length + 32 if stop is None else stop
            lo, hi = start + length, runs[k + 1][0] if k + 1 < len(runs) else last
        else:
            lo, hi = runs[k - 1][0] + runs[k - 1][1] if k else 0, start
        found = pattern.findall(template.tokenizer.decode(ids[max(lo, hi - 32):hi])) if hi > lo else []
        out.append(found[-1] if found else '')
    return out


class ProcessorSampledVideo:
    """The video hooks of a family whose processor samples the frames (put before ``Family`` in the bases).

    A family sets ``video_frames_per_step`` (the processor's temporal patch), ``video_sample_args`` (the
    template attributes ms-swift passes to the processor that ``sample_frames`` reads) and implements
    ``video_frames(template, encoded, ids, counts) -> [(resized (w, h), grid, tokens per step, time texts) |
    None]``, one per video, ``counts`` being each video's sampled frames (None: unknown).
    """

    video_geometry: ClassVar[bool] = True
    video_support: ClassVar[str] = 'encode'
    # ms-swift's load_video_hf loads with transformers' PyAV reader (the header's frames and rate, read as decord
    # reads them); a processor handed the path loads it with torchcodec (transformers' fetch_videos).
    video_header_backend: ClassVar[str] = 'decord'
    video_frames_per_step: ClassVar[int] = 1
    video_sample_args: ClassVar[tuple[str, ...]] = ()
    video_mismatch_fields: ClassVar[tuple[str, ...]] = ('num_frames', 'grid_t')

    @classmethod
    def video_settings(cls, parent, *, template=None, env=None):
        if template is None:
            raise ValueError(f'template {parent!r}: its processor samples the frames; swift-ext reads them from '
                             "the encode, with the model's processor in the process (no prediction without it).")
        kwargs = {name: getattr(template, name) for name in cls.video_sample_args if hasattr(template, name)}
        return template.processor.video_processor, kwargs

    @classmethod
    def predict_video(cls, parent, settings, *, width, height, total_frames, video_fps, row_kwargs, mode, name):
        from transformers.video_utils import VideoMetadata
        processor, kwargs = settings
        if getattr(processor, 'do_sample_frames', False):
            metadata = VideoMetadata(total_num_frames=total_frames, fps=video_fps, duration=total_frames / video_fps,
                                     video_backend='pyav', height=height, width=width)
            indices = processor.sample_frames(metadata, **kwargs)
        else:
            indices = range(total_frames)  # every frame the loader decoded
        return sampled_geometry(width=width, height=height, total_frames=total_frames, video_fps=video_fps,
                                indices=indices, frames_per_step=cls.video_frames_per_step)

    @classmethod
    def actual_video(cls, template, encoded: Mapping, entries, predicted, mode):
        if mode in ENGINE_MODES or encoded.get('input_ids') is None:
            return [None] * len(predicted), 'encode'
        counts = [None if geo is None else geo.num_frames for geo in predicted]
        found = cls.video_frames(template, encoded, tolist(encoded['input_ids']), counts)
        out = []
        for i, geo in enumerate(predicted):
            seen = found[i] if i < len(found) else None
            if geo is None or seen is None:
                out.append(None)
                continue
            resized, grid, tokens, stamps = seen
            out.append(frames_read(geo, resized=resized, grid=grid, tokens=tokens, timestamps=stamps))
        return out, 'encode'

    @classmethod
    def video_frames(cls, template, encoded: Mapping, ids: list, counts: list) -> list:
        raise NotImplementedError(f'{cls.__qualname__} does not read its video frames.')
