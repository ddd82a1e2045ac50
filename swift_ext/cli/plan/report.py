"""`plan`'s presentation: the summary (``--json``) and the text it prints."""
from __future__ import annotations

from collections import Counter

from ...families import family_of
from ...settings import PreprocessSettings
from ..clamps import LARGE_UPSCALE, summary_lines
from .stats import PlanStats
from .video import video_lines, video_summary
from .work import tile_knob

MAX_FAILURES_SHOWN = 50


def describe(counts: Counter) -> dict | None:
    """count, mean, p50, p95, max of a histogram of integers (exact; integers stay integers)."""
    n = sum(counts.values())
    if not n:
        return None
    values = sorted(counts.items())

    def percentile(p: float) -> int:
        rank, seen = max(1, -(-n * p // 100)), 0
        for value, count in values:
            seen += count
            if seen >= rank:
                return int(value)
        return int(values[-1][0])
    mean = sum(v * c for v, c in values) / n
    return {'count': n, 'mean': round(mean, 1), 'p50': percentile(50), 'p95': percentile(95),
            'max': int(values[-1][0])}


def summary(stats: PlanStats, settings: PreprocessSettings, *, settings_source: str = '',
            batch_size: int | None = None) -> dict:
    """The plan as ``--json`` prints it. ``settings_source``: where the settings were read (a checkpoint, or
    the built-in defaults); ``batch_size``: the per-device batch training uses (None: not given)."""
    unique_tokens = Counter(stats.unique.values())
    family = family_of(settings.template)[0]
    out = {
        'template': settings.template,
        'settings_source': settings_source,
        'settings': settings.to_dict(),
        'rows': stats.rows, 'rows_with_images': stats.rows_with_images, 'images': stats.images,
        'unique_images': len(stats.unique), 'unique_images_is_lower_bound': stats.unique_overflow,
        'samples_planned': sum(stats.tokens_per_sample.values()),
        'samples_unchecked_remote': stats.samples_unchecked,
        'visual_tokens_total': int(sum(t * n for t, n in stats.tokens_per_sample.items())),
        'visual_tokens_per_image': describe(stats.tokens_per_image),
        'visual_tokens_per_unique_image': describe(unique_tokens),
        'visual_tokens_per_sample': describe(stats.tokens_per_sample),
        'most_expensive_rows': [{'row': -r, 'visual_tokens': int(t)} for t, r in stats.top_rows],
        'tile_histogram': {str(k): v for k, v in sorted(stats.tiles.items())},
        'verified': stats.verified,
        'clamped': dict(stats.clamped),
        'large_upscale_factor': LARGE_UPSCALE,
        'large_upscale_count': stats.upscale_count,
        'large_upscales': [{'row': r, 'image_index': i, 'image': n, 'change': t} for r, i, n, t in stats.upscales],
        'batch_size': batch_size,
        'collate': _collate(stats, family, batch_size),
        'remote_images_not_checked': stats.remote,
        'failing_rows': stats.failing_rows,
        'failure_count': stats.failure_count,
        'failures': [{'row': r, 'image_index': i, 'image': n, 'error': e} for r, i, n, e in stats.failures],
        'path_warning_count': stats.path_warning_count,
        'path_warnings': [{'row': r, 'image_index': i, 'image': n, 'warning': w}
                          for r, i, n, w in stats.path_warnings],
        'exif_rotated_count': stats.exif_count,
        'exif_rotated': [{'row': r, 'image_index': i, 'image': n, 'orientation': o} for r, i, n, o in stats.exif],
        'solution_outside_image_count': stats.solution_issue_count,
        'solution_outside_image': [{'row': r, 'box': b, 'image_size': s, 'looks_like_0_1000': norm}
                                   for r, b, s, norm in stats.solution_issues],
        'sweep': [{'pixels': v, 'applied_as': family.sweep_knob, 'visual_tokens_total': t,
                   'max_visual_tokens_per_sample': m, 'shrunk_by_max_pixels': s, 'failing_images': f}
                  for v, (t, s, f, m) in stats.sweep.items()],
        'tile_sweep': [{tile_knob(settings) or 'max_num': v, 'visual_tokens_total': t,
                        'max_visual_tokens_per_sample': m, 'failing_images': f}
                       for v, (t, s, f, m) in stats.tile_sweep.items()],
        'videos': video_summary(stats.video, describe),
    }
    if stats.per_image_count:
        out['per_image'] = [{'row': r, 'image_index': i, 'image': n, 'clamped': c, **geo}
                            for r, i, n, geo, c in stats.per_image]
        out['per_image_is_truncated'] = stats.per_image_count > len(stats.per_image)
    return out


def _collate(stats: PlanStats, family, batch_size: int | None) -> dict:
    """Rows grouped by the shape ms-swift's parent collator joins (``Family.collate_shape``); 2+ groups
    cannot share a batch."""
    shapes = sorted(stats.collate_shapes.items(), key=lambda kv: (min(kv[1][1] or [0]), kv[0]))
    groups = [{'shape': shape, 'rows': n, 'first_rows': rows} for shape, (n, rows) in shapes]
    return {'rule': family.collate_rule, 'groups': groups, 'groups_are_incomplete': stats.collate_shapes_overflow,
            'mixed': len(groups) > 1, 'can_fail': len(groups) > 1 and (batch_size is None or batch_size > 1)}


def format_text(s: dict) -> str:
    """The plan as `swift-ext plan` prints it."""
    return '\n'.join(_token_lines(s) + video_lines(s.get('videos')) + _warning_lines(s) + _failure_lines(s)
                     + _sweep_lines(s))


def _token_lines(s: dict) -> list[str]:
    lines = [f'Template {s["template"]}: {s["rows"]} rows, {s["rows_with_images"]} with images, '
             f'{s["images"]} images ({s["unique_images"]}{"+" if s["unique_images_is_lower_bound"] else ""} unique)']
    if s.get('settings_source'):
        lines.append(f'  settings: {s["settings_source"]}')
    for key, label in (('visual_tokens_per_image', 'per image'), ('visual_tokens_per_unique_image', 'per unique'),
                       ('visual_tokens_per_sample', 'per sample')):
        d = s[key]
        if d:
            lines.append(f'  visual tokens {label:10s} mean {d["mean"]:.1f}  p50 {d["p50"]}  '
                         f'p95 {d["p95"]}  max {d["max"]}')
    lines.append(f'  visual tokens total: {s["visual_tokens_total"]} over {s["samples_planned"]} samples')
    if s['most_expensive_rows']:
        lines.append('  most expensive rows: ' + ', '.join(f'row {r["row"]} ({r["visual_tokens"]})'
                                                         for r in s['most_expensive_rows'][:5]))
    if s['tile_histogram']:
        lines.append(f'  tiles per image: {s["tile_histogram"]}')
    lines += summary_lines(s['clamped'])
    if s['remote_images_not_checked']:
        lines.append(f'  remote images not checked: {s["remote_images_not_checked"]} '
                     f'({s["samples_unchecked_remote"]} samples left out of the token counts)')
    return lines


def _warning_lines(s: dict) -> list[str]:
    lines: list[str] = []
    _listing(lines, 'Relative paths to check', s['path_warning_count'],
             [f'row {w["row"]} image {w["image_index"]}: {w["warning"]}' for w in s['path_warnings']])
    _listing(lines, 'Images with an EXIF orientation (a viewer rotates them; ms-swift and the model do not, '
             'so boxes drawn in a viewer are in another frame)', s['exif_rotated_count'],
             [f'row {e["row"]} image {e["image_index"]}: {e["image"]} (orientation {e["orientation"]})'
              for e in s['exif_rotated']])
    _listing(lines, f'Images enlarged {s["large_upscale_factor"]:g}x or more', s['large_upscale_count'],
             [f'row {u["row"]} image {u["image_index"]}: {u["image"]}: {u["change"]}' for u in s['large_upscales']])
    lines += _collate_lines(s)
    _listing(lines, 'Rows whose solution lies outside the image', s['solution_outside_image_count'],
             [f'row {x["row"]}: box {x["box"]} on a {x["image_size"]} image'
              + (' (looks like 0-1000 units; solution must be original pixels)' if x['looks_like_0_1000'] else '')
              for x in s['solution_outside_image']])
    return lines


def _collate_lines(s: dict) -> list[str]:
    c = s['collate']
    if not c['mixed']:
        return []
    if not c['can_fail']:
        return [f'Rows of {len(c["groups"])} shapes ms-swift cannot batch together; with --batch_size 1 they never '
                'share a batch.']
    when = ('--batch_size not given: any per_device_train_batch_size > 1 can mix them; pass --batch_size 1 '
            'if you train with 1' if s['batch_size'] is None else f'--batch_size {s["batch_size"]} can mix them')
    lines = [f'Rows ms-swift cannot put in one batch: {len(c["groups"])} groups ({when})',
             f'  why: {c["rule"]}',
             '  fix: keep the rows of one group per batch, or train with per_device_train_batch_size 1']
    for g in c['groups']:
        more = f' and {g["rows"] - len(g["first_rows"])} more' if g['rows'] > len(g['first_rows']) else ''
        rows = 'row' if g['rows'] == 1 else 'rows'
        lines.append(f'  {g["shape"]}: {g["rows"]} {rows} ({rows} {", ".join(map(str, g["first_rows"]))}{more})')
    if c['groups_are_incomplete']:
        lines.append('  ... and more shapes (the first 1000 are listed)')
    return lines


def _failure_lines(s: dict) -> list[str]:
    lines = [f'Images that will fail: {s["failure_count"]} (in {s["failing_rows"]} rows)']
    for f in s['failures'][:MAX_FAILURES_SHOWN]:
        where = f'row {f["row"]}' + ('' if f['image_index'] is None else f' image {f["image_index"]}')
        lines.append(f'  {where}: {f["error"]}')
    if s['failure_count'] > MAX_FAILURES_SHOWN:
        lines.append(f'  ... and {s["failure_count"] - MAX_FAILURES_SHOWN} more (see --json)')
    if not s.get('verified'):
        lines.append('  (headers only: files cut short after their header are found with --verify)')
    return lines


def _sweep_lines(s: dict) -> list[str]:
    lines = []
    if s['sweep']:
        lines.append(f'Sweep (value applied as {s["sweep"][0]["applied_as"]}):')
        lines.append(f'  {"pixels":>10s} {"tokens total":>14s} {"max/sample":>11s} {"shrunk":>8s} {"failing":>8s}')
        for row in s['sweep']:
            lines.append(f'  {row["pixels"]:>10d} {row["visual_tokens_total"]:>14d} '
                         f'{row["max_visual_tokens_per_sample"]:>11d} {row["shrunk_by_max_pixels"]:>8d} '
                         f'{row["failing_images"]:>8d}')
    if s['tile_sweep']:
        knob = next(k for k in s['tile_sweep'][0] if k not in ('visual_tokens_total', 'max_visual_tokens_per_sample',
                                                                'failing_images'))
        lines.append(f'Sweep of {knob}:')
        lines.append(f'  {knob:>10s} {"tokens total":>14s} {"max/sample":>11s} {"failing":>8s}')
        for row in s['tile_sweep']:
            lines.append(f'  {row[knob]:>10d} {row["visual_tokens_total"]:>14d} '
                         f'{row["max_visual_tokens_per_sample"]:>11d} {row["failing_images"]:>8d}')
    return lines


def _listing(lines: list, title: str, count: int, items: list[str]) -> None:
    if not count:
        return
    lines.append(f'{title}: {count}')
    lines.extend(f'  {item}' for item in items[:MAX_FAILURES_SHOWN])
    if count > MAX_FAILURES_SHOWN:
        lines.append(f'  ... and {count - MAX_FAILURES_SHOWN} more (see --json)')
