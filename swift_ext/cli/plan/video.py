"""`plan`'s videos: each row's videos from their headers (no frame decoded), their frames and video tokens.

A row's ``videos`` are read as ms-swift reads them (a path, bytes, or a list of frame files) and
predicted with the template's video settings as the environment gives them (``FPS``,
``FPS_MAX_FRAMES``, ``VIDEO_MAX_TOKEN_NUM`` / ``VIDEO_MAX_PIXELS``, ``MODEL_SEQ_LEN``) and the row's
``chat_template_kwargs`` (``fps``, ``nframes``, ``video_start`` / ``video_end``, pixel limits).
A video is flagged when something beyond rounding cuts what the model sees of it: ``max_frames``
(``FPS_MAX_FRAMES`` or a row's ``max_frames`` kept fewer frames than the clip at ``FPS``),
``max_pixels`` (the per-frame budget ``VIDEO_MAX_TOKEN_NUM`` shrank each frame) or ``model_seq_len``
(the sequence budget over all frames shrank each frame).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...cache import BoundedCache
from ...geometry import VideoClamp, VideoError, VideoGeometry
from ...images import classify
from ..dataset import cut, row_videos

MAX_KEPT = 1000
HEADER_CACHE = 65536  # video headers remembered per worker (datasets repeat videos: many questions per clip)
FLAGGED = (VideoClamp.MAX_FRAMES.value, VideoClamp.MAX_PIXELS.value, VideoClamp.MODEL_SEQ_LEN.value)
KEPT_COUNTS = {'failures': 'failure_count', 'flagged': 'flagged_count'}
VIDEO_KWARGS = ('fps', 'nframes', 'min_frames', 'max_frames', 'video_start', 'video_end', 'max_pixels',
                'min_pixels', 'total_pixels', 'resized_width', 'resized_height')


@dataclass
class VideoPlanStats:
    """The videos' sums over rows; merged chunk by chunk like ``PlanStats``."""

    rows_with_videos: int = 0
    videos: int = 0
    seconds: float = 0.0  # source durations summed
    frames_per_video: Counter = field(default_factory=Counter)
    tokens_per_video: Counter = field(default_factory=Counter)
    tokens_per_sample: Counter = field(default_factory=Counter)  # rows whose every video was planned
    clamped: Counter = field(default_factory=Counter)  # clamp name -> videos
    flagged: list = field(default_factory=list)  # (row, video_index, video, clamps, frames, wanted, size, tokens)
    flagged_count: int = 0
    failures: list = field(default_factory=list)  # (row, video_index, video, message)
    failure_count: int = 0
    failing_rows: int = 0
    remote: int = 0
    not_supported: int = 0  # videos not planned: the template has no video geometry, or a setting is refused
    refusal: str | None = None  # why not

    def merge(self, other: VideoPlanStats) -> None:
        for name in ('rows_with_videos', 'videos', 'seconds', 'flagged_count', 'failure_count', 'failing_rows',
                     'remote', 'not_supported'):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ('frames_per_video', 'tokens_per_video', 'tokens_per_sample', 'clamped'):
            getattr(self, name).update(getattr(other, name))
        self.refusal = self.refusal or other.refusal
        for name in ('flagged', 'failures'):
            mine = getattr(self, name)
            mine.extend(getattr(other, name)[:max(0, MAX_KEPT - len(mine))])

    def keep(self, name: str, item: tuple) -> None:
        items = getattr(self, name)
        if len(items) < MAX_KEPT:
            items.append(item)
        count = KEPT_COUNTS[name]
        setattr(self, count, getattr(self, count) + 1)


def row_video_kwargs(row: Mapping) -> dict:
    """The row's ``chat_template_kwargs`` that change a video's sampling or size."""
    kwargs = row.get('chat_template_kwargs')
    if not isinstance(kwargs, Mapping):
        return {}
    return {k: kwargs[k] for k in VIDEO_KWARGS if kwargs.get(k) is not None}


def wanted_frames(geo: VideoGeometry, fps: float) -> int:
    """The frames the clip holds at ``fps`` (even, at most the clip's), before any cap: what ``max_frames`` cut."""
    clip = geo.end_frame - geo.start_frame + 1
    return min(clip, math.floor(clip / geo.video_fps * fps / 2) * 2)


class VideoPlanner:
    """One worker's video planning for ``template``: settings read once, headers cached."""

    def __init__(self, template: str, env: Mapping[str, str] | None = None):
        from ...families import family_of
        from ...video_rows import video_settings_for
        self.template, self.env = template, env
        self.family, self.spec = family_of(template)
        try:
            self.settings = video_settings_for(template, env=env)
            self.refusal = None
        except ValueError as exc:  # the template has no video geometry: each video is counted, not planned
            self.settings, self.refusal = None, str(exc)
        self.headers = BoundedCache(HEADER_CACHE)
        self.fps = getattr(self.settings, 'fps', None)

    def _header(self, source: Any):
        from ...video_io import read_video_header
        info = classify(source, self.env)
        key = info.key if info.kind == 'path' else None
        if key is not None and key in self.headers:
            return self.headers[key]
        try:
            result = read_video_header(source, backend=self.family.video_header_backend, env=self.env), None
        except VideoError as exc:
            result = None, exc
        if key is not None:
            self.headers[key] = result
        return result

    def predict(self, source: Any, row_kwargs: Mapping) -> VideoGeometry:
        """``source``'s geometry from its header; raises ``VideoError`` naming the video."""
        from ...video_io import image_list_sizes
        if isinstance(source, (list, tuple)):
            name = classify(source[0], self.env).name if source else '<no frame>'
            return self.family.predict_video_frames(self.spec.parent, self.settings, sizes=image_list_sizes(source),
                                                    row_kwargs=row_kwargs, mode='train', name=name)
        header, error = self._header(source)
        if error is not None:
            raise error
        return self.family.predict_video(self.spec.parent, self.settings, width=header.width, height=header.height,
                                         total_frames=header.total_frames, video_fps=header.video_fps,
                                         row_kwargs=row_kwargs, mode='train', name=header.name)

    def plan_row(self, stats: VideoPlanStats, number: int, row: Mapping) -> None:
        """Add one row's videos to ``stats``; never raises for what a video or a row limit holds."""
        videos = row_videos(row)
        if not videos:
            return
        stats.rows_with_videos += 1
        stats.videos += len(videos)
        if self.refusal is not None:
            stats.not_supported += len(videos)
            stats.refusal = self.refusal
            return
        row_kwargs = row_video_kwargs(row)
        tokens, failed, remote = 0, False, False
        for index, source in enumerate(videos):
            info = classify(source[0] if isinstance(source, (list, tuple)) and source else source, self.env)
            if info.kind == 'url':
                stats.remote += 1
                remote = True
                continue
            try:
                geo = self.predict(source, row_kwargs)
            except VideoError as exc:
                stats.keep('failures', (number, index, info.name, str(exc)))
                failed = True
                continue
            except Exception as exc:  # a hostile row limit (a string fps, ...): named, never raised
                stats.keep('failures', (number, index, info.name,
                                        f'{info.name}: cannot compute its geometry ({type(exc).__name__}: '
                                        f'{cut(str(exc), 300)})'))
                failed = True
                continue
            self._count(stats, number, index, info.name, geo, row_kwargs)
            tokens += geo.num_tokens
        if failed:
            stats.failing_rows += 1
        elif not remote:
            stats.tokens_per_sample[tokens] += 1

    def _count(self, stats: VideoPlanStats, number: int, index: int, name: str, geo: VideoGeometry,
               row_kwargs: Mapping) -> None:
        stats.seconds += geo.total_frames / geo.video_fps
        stats.frames_per_video[geo.num_frames] += 1
        stats.tokens_per_video[geo.num_tokens] += 1
        clamps = [str(c) for c in geo.clamped]
        stats.clamped.update(clamps)
        flagged = [c for c in clamps if c in FLAGGED]
        if flagged:
            fps = row_kwargs.get('fps', self.fps)
            wanted = geo.num_frames if 'nframes' in row_kwargs else wanted_frames(geo, fps)
            stats.keep('flagged', (number, index, name, flagged, geo.num_frames, wanted,
                                   f'{geo.resized_width}x{geo.resized_height}', geo.num_tokens))


# --- presentation ----------------------------------------------------------------------------------------
def video_summary(v: VideoPlanStats, describe) -> dict | None:
    """The ``videos`` part of ``plan --json`` (None for a dataset without videos)."""
    if not v.videos:
        return None
    return {
        'rows_with_videos': v.rows_with_videos, 'videos': v.videos,
        'seconds_total': round(v.seconds, 3),
        'frames_per_video': describe(v.frames_per_video),
        'video_tokens_per_video': describe(v.tokens_per_video),
        'video_tokens_per_sample': describe(v.tokens_per_sample),
        'video_tokens_total': int(sum(t * n for t, n in v.tokens_per_sample.items())),
        'clamped': dict(sorted(v.clamped.items())),
        'flagged_count': v.flagged_count,
        'flagged': [{'row': r, 'video_index': i, 'video': n, 'clamped': c, 'frames': f, 'frames_at_fps': w,
                     'frame_size': s, 'video_tokens': t} for r, i, n, c, f, w, s, t in v.flagged],
        'failing_rows': v.failing_rows, 'failure_count': v.failure_count,
        'failures': [{'row': r, 'video_index': i, 'video': n, 'error': e} for r, i, n, e in v.failures],
        'remote_videos_not_checked': v.remote,
        'videos_not_planned': v.not_supported, 'not_planned_because': v.refusal,
    }


WHY = {'max_frames': 'FPS_MAX_FRAMES cut the frames', 'max_pixels': 'VIDEO_MAX_TOKEN_NUM shrank each frame',
       'model_seq_len': 'MODEL_SEQ_LEN shrank each frame'}


def video_lines(s: dict | None, shown: int = 50) -> list[str]:
    """The lines `plan` prints for the videos."""
    if not s:
        return []
    lines = [f'Videos: {s["videos"]} in {s["rows_with_videos"]} rows, {s["seconds_total"]:.1f} s of source video']
    if s['videos_not_planned']:
        lines.append(f'  {s["videos_not_planned"]} videos not planned: {s["not_planned_because"]}')
    for key, label in (('frames_per_video', 'frames per video'), ('video_tokens_per_video', 'tokens per video'),
                       ('video_tokens_per_sample', 'tokens per sample')):
        d = s[key]
        if d:
            lines.append(f'  {label:18s} mean {d["mean"]:.1f}  p50 {d["p50"]}  p95 {d["p95"]}  max {d["max"]}')
    lines.append(f'  video tokens total: {s["video_tokens_total"]}')
    if s['clamped']:
        lines.append('  clamped: ' + ', '.join(f'{k} {n}' for k, n in s['clamped'].items()))
    if s['remote_videos_not_checked']:
        lines.append(f'  remote videos not checked: {s["remote_videos_not_checked"]}')
    why = {(x['row'], x['video_index']): '; '.join(WHY[c] for c in x['clamped']) for x in s['flagged']}
    _listing(lines, f'Videos clamped by FPS_MAX_FRAMES or the token budget: {s["flagged_count"]}', s['flagged_count'],
             [f'row {x["row"]} video {x["video_index"]}: {x["video"]}: {x["frames"]} frames (of {x["frames_at_fps"]} '
              f'at FPS), {x["frame_size"]} per frame, {x["video_tokens"]} tokens ({why[x["row"], x["video_index"]]})'
              for x in s['flagged'][:shown]], shown)
    _listing(lines, f'Videos that will fail: {s["failure_count"]} (in {s["failing_rows"]} rows)', s['failure_count'],
             [f'row {x["row"]} video {x["video_index"]}: {x["error"]}' for x in s['failures'][:shown]], shown)
    return lines


def _listing(lines: list, title: str, count: int, items: list, shown: int) -> None:
    if not count:
        return
    lines.append(title)
    lines.extend(f'  {item}' for item in items)
    if count > shown:
        lines.append(f'  ... and {count - shown} more (see --json)')
