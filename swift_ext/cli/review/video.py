"""`review`'s videos: what the run's encodes did to its videos (``kind: video`` lines), and a frame strip each.

Per mode (training encodes, rollouts): videos encoded and failed, frames sampled per video, video tokens
per video, what clamped them (``FPS_MAX_FRAMES``, the per-frame or sequence token budget), distinct
videos. The gallery draws, for the first distinct videos of the main mode, the frames their line names
(decoded only where the embedding policy confirms the file: ``embed``), with each frame's time.
Bounded like the rest of review: histograms of at most 4,096 bins, distinct videos counted up to
``MAX_DISTINCT``, errors kept by their first ``MAX_EXAMPLES`` kinds.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...geometry import VideoGeometry
from ...runlog import MODES
from ..bounded import Histogram, short
from .read import FileStatus, geometry_lines

MAX_DISTINCT = 100_000
MAX_EXAMPLES = 10
MAX_KINDS = 50


@dataclass
class VideoModeStats:
    videos: int = 0
    failures: int = 0
    errors: Counter = field(default_factory=Counter)
    frames: Histogram = field(default_factory=Histogram)
    tokens: Histogram = field(default_factory=Histogram)
    clamped: Counter = field(default_factory=Counter)
    mismatches: int = 0
    distinct: set = field(default_factory=set)
    distinct_exact: bool = True

    def add(self, r) -> None:
        if r.error:
            self.failures += 1
            if len(self.errors) < MAX_KINDS or r.error[:200] in self.errors:
                self.errors[short(r.error, 200)] += 1
            return
        self.videos += 1
        if isinstance(r.frame_indices, list):
            self.frames.add(len(r.frame_indices))
        if isinstance(r.num_tokens, int):
            self.tokens.add(r.num_tokens)
        clamps = r.clamped if isinstance(r.clamped, list) else [r.clamped] if r.clamped else []
        for name in clamps[:8]:
            if len(self.clamped) < MAX_KINDS or name in self.clamped:
                self.clamped[short(str(name), 40)] += 1
        self.mismatches += r.mismatch is not None
        if isinstance(r.video, str):
            if len(self.distinct) < MAX_DISTINCT:
                self.distinct.add(r.video)
            elif r.video not in self.distinct:
                self.distinct_exact = False


@dataclass
class VideoStats:
    """The video lines of a run, by mode (``GeometryStats.videos``)."""

    by_mode: dict[str, VideoModeStats] = field(default_factory=dict)

    def add(self, r) -> None:
        mode = r.mode if r.mode in MODES else '(other)'
        stats = self.by_mode.get(mode)
        if stats is None:
            stats = self.by_mode[mode] = VideoModeStats()
        stats.add(r)

    @property
    def main_mode(self) -> str | None:
        return next((m for m in MODES if m in self.by_mode), next(iter(self.by_mode), None))


def video_summary(stats: VideoStats, describe) -> dict | None:
    """The ``videos`` part of review's summary (None for a run without video lines); ``describe`` is
    ``aggregate.describe`` (passed in: aggregate imports this module for ``VideoStats``)."""
    if not stats.by_mode:
        return None
    out = {}
    for mode, m in stats.by_mode.items():
        out[mode] = {'videos': m.videos, 'failures': m.failures, 'distinct_videos': len(m.distinct),
                     'distinct_videos_exact': m.distinct_exact, 'frames_per_video': describe(m.frames),
                     'video_tokens_per_video': describe(m.tokens), 'clamped': dict(m.clamped.most_common()),
                     'mismatches': m.mismatches, 'failure_messages': dict(m.errors.most_common(MAX_EXAMPLES)),
                     'first_videos': sorted(m.distinct)[:MAX_EXAMPLES]}
    return {'main_mode': stats.main_mode, 'by_mode': out}


def video_records(geo_files: Sequence[str], keys: set, mode: str) -> dict[str, VideoGeometry]:
    """The first geometry each video of ``keys`` was logged with in ``mode`` (a second pass, bounded by keys)."""
    found: dict[str, VideoGeometry] = {}
    for path in geo_files:
        for _, line in geometry_lines(path, FileStatus(path), decode=json.loads, errors=(ValueError, RecursionError)):
            if not isinstance(line, dict) or line.get('kind') != 'video' or line.get('error'):
                continue
            key = line.get('video')
            if key in keys and key not in found and line.get('mode') == mode:
                try:
                    found[key] = VideoGeometry.from_dict(line)
                except (KeyError, TypeError, ValueError):
                    continue
            if len(found) == len(keys):
                return found
    return found


def video_strips(geo_files: Sequence[str], summary: dict | None, policy, count: int) -> tuple[str, ...]:
    """HTML frame strips of the first ``count`` distinct videos of the main mode."""
    from ..video_strip import strip_data_url, strip_html
    if not summary or count <= 0:
        return ()
    mode = summary['main_mode']
    keys = summary['by_mode'][mode]['first_videos'][:count]
    records = video_records(geo_files, set(keys), mode)
    out = []
    for key in keys:
        geo = records.get(key)
        if geo is None:
            continue
        refusal = policy.refusal(key) if '://' not in key and not key.startswith('sha1:') else 'not a local file'
        url = None
        if refusal is None:
            try:
                url = strip_data_url(key, geo)
            except Exception as exc:  # a file moved or changed since the run: the strip says so
                refusal = f'frames not drawn: {short(str(exc), 200)}'
        caption = (f'{geo.num_frames} frames of {geo.total_frames} at {geo.sample_fps:.3g} fps, clip '
                   f'{geo.video_start:g}-{geo.video_end:g} s, {geo.resized_width} x {geo.resized_height} per frame, '
                   f'{geo.num_tokens} tokens')
        out.append(strip_html(short(key, 160), url, caption, refusal))
    return tuple(out)


def video_text(summary: dict | None) -> list[str]:
    """The terminal lines for the videos."""
    if not summary:
        return []
    lines = []
    for mode, m in summary['by_mode'].items():
        approx = '' if m['distinct_videos_exact'] else 'about '
        lines.append(f'Videos ({mode} encodes): {m["videos"]:,} encodes of {approx}{m["distinct_videos"]:,} '
                     f'distinct video(s)   failures: {m["failures"]:,}')
        for key, label in (('frames_per_video', 'frames per video'), ('video_tokens_per_video', 'tokens per video')):
            d = m[key]
            if d:
                lines.append(f'  {label:17s} mean {d["mean"]:.1f}  p50 {d["p50"]}  p95 {d["p95"]}  max {d["max"]}')
        if m['clamped']:
            lines.append('  clamped: ' + ', '.join(f'{k} {n:,}' for k, n in m['clamped'].items()))
        for message, n in list(m['failure_messages'].items())[:3]:
            lines.append(f'  ! {n:,} x {message}')
    return lines


def video_html(summary: dict | None, table, esc, strips: Sequence[str] = ()) -> str:
    """The page's video section: a table per mode, then the frame strips."""
    if not summary:
        return ''
    cols = ['mode', 'videos', 'distinct', 'failures', 'frames mean', 'frames max', 'tokens mean', 'tokens max',
            'clamped']
    rows = []
    for mode, m in summary['by_mode'].items():
        f, t = m['frames_per_video'] or {}, m['video_tokens_per_video'] or {}
        rows.append([mode, m['videos'], m['distinct_videos'], m['failures'], f.get('mean'), f.get('max'),
                     t.get('mean'), t.get('max'), ', '.join(f'{k} {n}' for k, n in m['clamped'].items()) or '-'])
    frames = f'<h3>Frames sampled ({esc(summary["main_mode"])} encodes)</h3>{"".join(strips)}' if strips else ''
    return f'<h2>Videos</h2>{table(cols, rows)}{frames}'
