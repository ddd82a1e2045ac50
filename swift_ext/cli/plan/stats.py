"""`plan`'s sums over rows: what one chunk of rows found, merged chunk by chunk (bounded).

Counts are exact; kept examples (failures, warnings) stop at ``MAX_KEPT`` per kind, distinct
images at ``MAX_UNIQUE`` (then a lower bound), expensive rows at ``TOP_ROWS``.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

from ..clamps import counts, merged
from .video import VideoPlanStats

MAX_KEPT = 1000  # failures / warnings kept per kind; the rest are counted
TOP_ROWS = 10
MAX_UNIQUE = 2_000_000  # distinct images tracked (about 100 bytes each); beyond, counts are lower bounds
MAX_PER_IMAGE = 200_000  # images whose geometry `plan --json` lists (about 500 bytes each); the rest are counted
MAX_COLLATE_SHAPES = 1000  # distinct collate shapes tracked, each with its first COLLATE_ROWS rows
COLLATE_ROWS = 5
KEPT_COUNTS = {'failures': 'failure_count', 'path_warnings': 'path_warning_count', 'exif': 'exif_count',
               'solution_issues': 'solution_issue_count', 'upscales': 'upscale_count',
               'per_image': 'per_image_count'}


def new_sums() -> list:
    """A sweep value's sums: tokens total, shrunk, failing images, max tokens of a sample."""
    return [0, 0, 0, 0]


@dataclass
class PlanStats:
    """Sums over rows; chunks are merged with ``merge``."""

    rows: int = 0
    rows_with_images: int = 0
    images: int = 0
    tokens_per_image: Counter = field(default_factory=Counter)
    tokens_per_sample: Counter = field(default_factory=Counter)  # samples with every image planned
    tiles: Counter = field(default_factory=Counter)
    clamped: dict[str, int] = field(default_factory=lambda: counts(()))  # clamp name -> images
    remote: int = 0
    samples_unchecked: int = 0  # samples left out of the token counts: a remote image
    unique: dict[int, int] = field(default_factory=dict)  # image identity hash -> tokens (first seen)
    unique_overflow: bool = False
    top_rows: list = field(default_factory=list)  # (tokens, -row) of the most expensive samples
    failures: list = field(default_factory=list)  # (row, image_index, image, message), first MAX_KEPT
    failure_count: int = 0
    failing_rows: int = 0
    path_warnings: list = field(default_factory=list)  # (row, image_index, image, message)
    path_warning_count: int = 0
    exif: list = field(default_factory=list)  # (row, image_index, image, orientation)
    exif_count: int = 0
    solution_issues: list = field(default_factory=list)  # (row, box, 'WxH', likely_norm1000)
    solution_issue_count: int = 0
    upscales: list = field(default_factory=list)  # (row, image_index, image, text) enlarged >= LARGE_UPSCALE
    upscale_count: int = 0
    per_image: list = field(default_factory=list)  # (row, image_index, image, geometry dict, clamp): --json
    per_image_count: int = 0
    # collate shape (the family's ``collate_shape`` of a row) -> [rows, first COLLATE_ROWS row numbers]
    collate_shapes: dict[str, list] = field(default_factory=dict)
    collate_shapes_overflow: bool = False
    sweep: dict[int, list] = field(default_factory=dict)  # value -> new_sums()
    tile_sweep: dict[int, list] = field(default_factory=dict)  # tile limit -> new_sums()
    verified: bool = False  # whether --verify checked file bodies, not just headers
    video: VideoPlanStats = field(default_factory=VideoPlanStats)  # the rows' videos (plan/video.py)

    def merge(self, other: PlanStats) -> None:
        for name in ('rows', 'rows_with_images', 'images', 'remote', 'samples_unchecked', 'failure_count',
                     'failing_rows', 'path_warning_count', 'exif_count', 'solution_issue_count', 'upscale_count',
                     'per_image_count'):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ('tokens_per_image', 'tokens_per_sample', 'tiles'):
            getattr(self, name).update(getattr(other, name))
        self.clamped = merged(self.clamped, other.clamped)
        for name in ('failures', 'path_warnings', 'exif', 'solution_issues', 'upscales', 'per_image'):
            mine = getattr(self, name)
            mine.extend(getattr(other, name)[:max(0, _limit(name) - len(mine))])
        for shape, (n, rows) in other.collate_shapes.items():
            self.add_collate_shape(shape, rows, n)
        self.collate_shapes_overflow |= other.collate_shapes_overflow
        for key, tokens in other.unique.items():
            if len(self.unique) >= MAX_UNIQUE:
                self.unique_overflow = True
                break
            self.unique.setdefault(key, tokens)
        self.unique_overflow |= other.unique_overflow
        self.video.merge(other.video)
        self.top_rows = heapq.nlargest(TOP_ROWS, self.top_rows + other.top_rows)
        for mine_all, theirs_all in ((self.sweep, other.sweep), (self.tile_sweep, other.tile_sweep)):
            for value, sums in theirs_all.items():
                mine = mine_all.setdefault(value, new_sums())
                for i in range(3):
                    mine[i] += sums[i]
                mine[3] = max(mine[3], sums[3])

    def keep(self, name: str, item: tuple) -> None:
        """Count one ``name`` ('failures', 'path_warnings', ...) and keep it while fewer than ``MAX_KEPT`` are."""
        items = getattr(self, name)
        if len(items) < _limit(name):
            items.append(item)
        count = KEPT_COUNTS[name]
        setattr(self, count, getattr(self, count) + 1)

    def add_collate_shape(self, shape: str, rows: list[int], n: int = 1) -> None:
        """Count ``n`` rows of one collate shape (``rows``: their numbers, the first few kept)."""
        entry = self.collate_shapes.get(shape)
        if entry is None:
            if len(self.collate_shapes) >= MAX_COLLATE_SHAPES:
                self.collate_shapes_overflow = True
                return
            entry = self.collate_shapes[shape] = [0, []]
        entry[0] += n
        entry[1].extend(rows[:max(0, COLLATE_ROWS - len(entry[1]))])


def _limit(name: str) -> int:
    return MAX_PER_IMAGE if name == 'per_image' else MAX_KEPT
