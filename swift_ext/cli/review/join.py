"""Joining completions to images: each completions row's rewards, by the visual tokens of its image.

Each completions.jsonl row is one sampled completion. When the `geo_log` callback added
``geo_visual_tokens`` (the tokens of the row's own images), that value is used. Otherwise the row
is joined by step: it gets the mean visual tokens per image of the geometry records with the row's
step (``step_tokens``), so rows of a step share a value. Rewards are accumulated per integer token
value (a bounded table), then grouped into quartiles of the rows' token values.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ...runlog import COMPLETION_COLUMNS, COMPLETIONS_FILE, MAX_COMPLETIONS_LINE, MODES
from ..bounded import FileStatus, Histogram, as_int, as_metric, as_number, iter_lines
from .aggregate import MAX_SERIES, MAX_STEPS, GeometryStats

# Columns of GRPO's completions table that are not rewards.
NON_REWARD_COLUMNS = {'step', 'prompt', 'completion', 'advantages', 'entropy', 'solution',
                      'num_turns', 'geo_image', 'images', *COMPLETION_COLUMNS}


@dataclass
class CompletionStats:
    status: FileStatus
    rows: int
    reward_means: dict[str, float]
    reward_missing: dict[str, int]
    joined_by: dict[str, int]  # how rows got their tokens: 'column', 'step' or 'none'
    by_token_quartile: list[dict]
    reward_out_of_range: dict[str, int]  # values infinite or beyond bounded.MAX_METRIC, left out


def step_tokens(geo: GeometryStats) -> dict[int, float]:
    """Step -> mean visual tokens per image, for the step join: from a step's rollout encodes where
    it has any (those produced the completions), else its train encodes."""
    out: dict[int, float] = {}
    for mode in MODES:  # 'rollout' after 'train': a step's rollout encodes win
        if mode in geo.by_mode:
            out.update({s: t / n for s, (n, t, _) in geo.by_mode[mode].per_step.items() if s is not None and n})
    return out


def _reward_names(table: dict, known: list[str]) -> list[str]:
    if known:
        return known
    return [k for k, v in list(table.items())[:MAX_SERIES] if k not in NON_REWARD_COLUMNS
            and isinstance(v, list) and v and (as_number(v[0]) is not None or v[0] is None)]


def read_completions(run_dir: str, reward_names: list[str], step_tokens: dict[int, float],
                     progress=None, sampler=None) -> CompletionStats:
    """Reward means (and missing counts) per column, and rewards grouped by visual tokens (the join above).

    ``sampler`` (the gallery's) is offered every row.
    """
    status = FileStatus(os.path.join(run_dir, COMPLETIONS_FILE))
    sums: dict[str, list] = {}  # name -> [sum, count, missing, out of range]
    by_tokens: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    rows_by_tokens = Histogram()
    joined = {'column': 0, 'step': 0, 'none': 0}
    rows = 0
    previous_steps = None
    for line_no, table in iter_lines(status.path, status, max_line=MAX_COMPLETIONS_LINE, progress=progress):
        steps = table.get('step') if isinstance(table, dict) else None
        if not isinstance(steps, list):
            status.bad(line_no)
            continue
        if steps == previous_steps and steps:
            # ms-swift logs the last step twice (the last train log and the summary log)
            status.duplicate_lines += 1
            continue
        previous_steps = steps
        names = _reward_names(table, reward_names)
        columns = {name: table.get(name) for name in names if len(sums) < MAX_SERIES or name in sums}
        geo_tokens = table.get('geo_visual_tokens')
        geo_tokens = geo_tokens if isinstance(geo_tokens, list) else []
        for i, step_value in enumerate(steps):
            rows += 1
            step = as_int(step_value)
            tokens = as_number(geo_tokens[i]) if i < len(geo_tokens) else None
            how = 'column'
            if tokens is None or tokens < 0:
                tokens, how = (step_tokens.get(step) if step is not None else None), 'step'
            if tokens is None:
                how = 'none'
            joined[how] += 1
            bucket = int(round(tokens)) if tokens is not None and tokens < 1 << 53 else None
            if bucket is not None:
                rows_by_tokens.add(bucket)
            cells = by_tokens[bucket - bucket % rows_by_tokens.width] \
                if bucket is not None and len(by_tokens) < MAX_STEPS else None
            values = _add_rewards(sums, columns, i, cells)
            if sampler is not None:
                sampler.offer(step, line_no, i, values)
    means = {name: s / n for name, (s, n, _, _) in sums.items() if n}
    missing = {name: m for name, (_, _, m, _) in sums.items()}
    out_of_range = {name: b for name, (_, _, _, b) in sums.items() if b}
    return CompletionStats(status, rows, means, missing, joined, _quartile_table(rows_by_tokens, by_tokens),
                           out_of_range)


def _add_rewards(sums: dict[str, list], columns: dict, i: int, cells: dict | None) -> dict[str, float | None]:
    """Row ``i``'s reward values, added to ``sums`` (name -> [sum, count, missing, out of range]) and to
    its token bucket's ``cells``; a value out of range (``as_metric``) is counted, never added."""
    values = {}
    for name, column in columns.items():
        cell = sums.setdefault(name, [0.0, 0, 0, 0])
        value, bad = as_metric(column[i]) if isinstance(column, list) and i < len(column) else (None, False)
        values[name] = value
        if value is None:
            cell[3 if bad else 2] += 1
            continue
        cell[0] += value
        cell[1] += 1
        if cells is not None:
            acc = cells[name]
            acc[0] += value
            acc[1] += 1
    return values


def _quartile_table(weights: Histogram, by_tokens: dict[int, dict[str, list]]) -> list[dict]:
    """Rows grouped into token-count quartiles: token range, rows and mean of each reward."""
    if not weights:
        return []
    edges = [weights.percentile(q) for q in (25, 50, 75)]
    groups: list[dict[str, Any]] = [{'quartile': f'Q{i + 1}', 'min_tokens': None, 'max_tokens': None, 'rows': 0,
                                     'sums': defaultdict(lambda: [0.0, 0])} for i in range(4)]
    merged: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for t, cells in by_tokens.items():  # keys made before a coarsening land in their final bin
        for name, (s, n) in cells.items():
            acc = merged[t - t % weights.width][name]
            acc[0] += s
            acc[1] += n
    for t, n in weights.items():
        g = groups[sum(t > e for e in edges)]
        g['min_tokens'] = t if g['min_tokens'] is None else g['min_tokens']
        g['max_tokens'] = t
        g['rows'] += n
        for name, (s, k) in merged.get(t, {}).items():
            g['sums'][name][0] += s
            g['sums'][name][1] += k
    out = []
    for g in groups:
        sums = g.pop('sums')
        if g['rows']:
            g['reward_means'] = {name: s / n for name, (s, n) in sorted(sums.items()) if n}
            out.append(g)
    return out
