"""What `swift-ext review` reports, as one typed, frozen object built once from a run's logs.

``summarize`` reads (``read``), aggregates (``aggregate``), joins completions to images (``join``)
and draws the gallery (``gallery`` + ``cards``); the report, the terminal text and ``--json``
only present the ``ReviewSummary`` it returns, so all three say the same thing.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from ...runlog import COMPLETIONS_FILE, GEOMETRY_GLOB, LOGGING_FILE
from ..bounded import MAX_METRIC, Histogram
from ..cards import Gallery, draw_gallery
from ..embed import review_policy
from .aggregate import (
    MAX_EXAMPLES,
    MAX_SERIES,
    MAX_STEPS,
    GeometryStats,
    ModeStats,
    describe,
    read_geometry,
    read_logging,
)
from .gallery import RowSampler, matched_words, review_gallery
from .join import read_completions, step_tokens
from .read import geometry_files, read_args, read_run_info
from .video import video_strips, video_summary


@dataclass(frozen=True)
class ImageSummary:
    """The numbers of the encodes the report describes: the training encodes, else the rollouts'."""

    images: int  # encodes with a geometry (an image encoded twice counts twice)
    encodes: int
    unique_images: int
    unique_images_exact: bool
    failures: int
    failure_messages: dict[str, int]
    original_width: dict | None
    original_height: dict | None
    original_megapixels: dict | None
    resized_width: dict | None
    resized_height: dict | None
    resized_megapixels: dict | None
    visual_tokens_per_image: dict | None
    most_common_original_sizes: dict[str, int]
    clamped: dict[str, int]  # clamp name -> images, every name of geometry.Clamp
    large_upscales: int  # images enlarged clamps.LARGE_UPSCALE times or more
    mismatches: int
    mismatch_fields: dict[str, int]
    mismatch_examples: tuple[dict, ...]
    per_step: dict[str, dict]
    per_image: tuple[dict, ...]
    tile_histogram: dict[str, int] | None  # tiling families only: a Qwen run has no tiles to show
    histograms: dict[str, Histogram]  # for the plots; not part of the JSON

    @classmethod
    def of(cls, m: ModeStats) -> ImageSummary:
        images = m.images or 1  # for the exact means; describe() gives None when there is no image
        return cls(
            images=m.images, encodes=m.images, unique_images=m.unique.count(), unique_images_exact=m.unique.exact,
            failures=m.failures, failure_messages=dict(m.errors.most_common(MAX_EXAMPLES)),
            original_width=describe(m.original_width), original_height=describe(m.original_height),
            original_megapixels=describe(m.original_mp, 0.01, mean=m.original_pixels / 1e6 / images),
            resized_width=describe(m.resized_width), resized_height=describe(m.resized_height),
            resized_megapixels=describe(m.resized_mp, 0.01, mean=m.resized_pixels / 1e6 / images),
            visual_tokens_per_image=describe(m.tokens),
            most_common_original_sizes=dict(m.original_sizes.most_common(5)),
            clamped=dict(m.clamped), large_upscales=m.large_upscales,
            mismatches=m.mismatches, mismatch_fields=dict(m.mismatch_fields.most_common(20)),
            mismatch_examples=tuple(m.mismatch_examples),
            per_step={str(s): {'images': n, 'tokens': t, 'failures': f}
                      for s, (n, t, f) in sorted(m.per_step.items(), key=lambda x: (x[0] is None, x[0] or 0))},
            per_image=tuple(sorted(({k: v for k, v in row.items() if not k.startswith('_')}
                                    for row in m.image_rows.values()),
                                   key=lambda r: (r['error'] is None, r['mismatch'] is None, r['clamped'] is None))),
            tile_histogram={str(k): v for k, v in m.tiles.items()} if m.tiles else None,
            histograms={'visual_tokens_per_image': m.tokens, 'original_megapixels': m.original_mp,
                        'resized_megapixels': m.resized_mp, 'tiles': m.tiles})

    def to_json(self) -> dict:
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != 'histograms'}
        if out['tile_histogram'] is None:
            del out['tile_histogram']
        return out


@dataclass(frozen=True)
class ReviewSummary:
    """Everything review reports about one run. Built by ``summarize``; nothing changes it after."""

    run_dir: str
    run: dict[str, Any]
    files: tuple[dict, ...]
    problems: tuple[str, ...]
    records_by_mode: dict[str, int]
    records_by_rank: dict[str, int]
    templates: dict[str, int]
    mode: str | None
    steps: int | None
    reward_means_logged: dict[str, float | None]
    reward_missing_logged: dict[str, int]
    reward_means_completions: dict[str, float]
    reward_missing_completions: dict[str, int]
    reward_out_of_range: dict[str, int]  # values infinite or beyond bounded.MAX_METRIC (logged steps + rows)
    completion_rows: int
    completions_joined_by: dict[str, int]
    reward_by_token_quartile: tuple[dict, ...]
    series: dict[str, list]
    series_means: dict[str, float | None]
    images: ImageSummary | None
    gallery: Gallery | None
    videos: dict | None = None  # review/video.py's video_summary
    video_strips: tuple[str, ...] = ()  # HTML frame strips; not part of the JSON

    def to_json(self) -> dict:
        """The summary as JSON-ready data (what ``--json`` prints): one flat object."""
        left_out = ('images', 'gallery', 'video_strips')
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in left_out}
        if self.images is not None:
            out.update(self.images.to_json())
        if self.gallery is not None and self.gallery.cards:
            out['gallery'] = self.gallery.summary()
            out['gallery_embedded'] = self.gallery.counts()
        return out

    def reward_values(self, name: str) -> int | None:
        """How many completions rows hold a value of reward ``name`` (None: no completions column)."""
        missing = self.reward_missing_completions.get(name)
        return self.completion_rows - missing if missing is not None else None


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: the JSON shape of a field."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def summarize(run_dir: str, progress=None, *, gallery: int = 0, coords: str | None = None,
              gallery_seed: int = 0, gallery_max_bytes: int = 4 << 20,
              images_under: Sequence[str] = ()) -> ReviewSummary:
    """Read, aggregate and join a run's logs (and draw its gallery of ``gallery`` rows).

    ``images_under``: folders whose image files the gallery may embed, besides the defaults of ``embed``.
    """
    geo = read_geometry(run_dir, progress)
    log = read_logging(run_dir, progress)
    reward_names = sorted(k[len('rewards/'):-len('/mean')] for k in log.series
                          if k.startswith('rewards/') and k.endswith('/mean'))
    sampler = RowSampler(gallery, seed=gallery_seed) if gallery > 0 else None
    comp = read_completions(run_dir, reward_names, step_tokens(geo), progress, sampler)
    info = read_run_info(run_dir)
    drawn = None
    if sampler is not None and comp.rows:
        policy = review_policy(run_dir, read_args(run_dir), images_under)
        items = review_gallery(run_dir, sampler, info, policy, coords=coords)
        notes = [*policy.notes, *filter(None, [matched_words(items)])]
        drawn = draw_gallery(items, gallery_max_bytes, policy.describe(), notes)
    videos = video_summary(geo.videos, describe)
    strips = video_strips(geometry_files(run_dir), videos, review_policy(run_dir, read_args(run_dir), images_under),
                          gallery) if videos and gallery > 0 else ()
    logged = {name: log.series[f'rewards/{name}/mean'] for name in reward_names}
    main = geo.by_mode.get(geo.main_mode) if geo.main_mode else None
    return ReviewSummary(
        run_dir=os.path.abspath(run_dir), run=info,
        files=tuple(f.to_dict() for f in [*geo.files, log.status, comp.status]),
        problems=tuple(_problems(run_dir, geo, log, comp)),
        records_by_mode={m: s.images + s.failures for m, s in geo.by_mode.items()},
        records_by_rank=dict(sorted(geo.ranks.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        templates=dict(geo.templates.most_common(10)), mode=geo.main_mode, steps=log.last_step,
        reward_means_logged={name: s.mean for name, s in logged.items()},
        reward_missing_logged={name: s.missing for name, s in logged.items()},
        reward_means_completions=comp.reward_means, reward_missing_completions=comp.reward_missing,
        reward_out_of_range=_out_of_range(logged, comp.reward_out_of_range),
        completion_rows=comp.rows, completions_joined_by=comp.joined_by,
        reward_by_token_quartile=tuple(comp.by_token_quartile),
        series={k: s.points for k, s in log.series.items()}, series_means={k: s.mean for k, s in log.series.items()},
        images=ImageSummary.of(main) if main is not None else None, gallery=drawn, videos=videos,
        video_strips=strips)


def _out_of_range(logged: dict, completions: dict[str, int]) -> dict[str, int]:
    out = {name: s.out_of_range for name, s in logged.items() if s.out_of_range}
    for name, n in completions.items():
        out[name] = out.get(name, 0) + n
    return dict(sorted(out.items()))


def _problems(run_dir: str, geo: GeometryStats, log, comp) -> list[str]:
    problems = [p for f in [*geo.files, log.status, comp.status] for p in f.problems()]
    if not geo.files:
        problems.insert(0, f'no {GEOMETRY_GLOB} in {run_dir} (was --callbacks geo_log used?)')
    for key, series in log.series.items():
        if series.out_of_range:
            problems.append(f'{LOGGING_FILE}: {key}: {series.out_of_range:,} value(s) infinite or beyond '
                            f'\u00b1{MAX_METRIC:g} left out of its mean and plot')
    for name, count in comp.reward_out_of_range.items():
        problems.append(f'{COMPLETIONS_FILE}: {name}: {count:,} value(s) infinite or beyond \u00b1{MAX_METRIC:g} '
                        'left out of its mean')
    if log.dropped_keys:
        problems.append(f'{LOGGING_FILE}: {log.dropped_keys} metric key(s) beyond the first {MAX_SERIES} ignored')
    for mode, stats in geo.by_mode.items():
        if stats.steps_dropped:
            problems.append(f'{mode} records: steps beyond the first {MAX_STEPS:,} not tabled per step '
                            f'({stats.steps_dropped:,} records)')
    return problems
