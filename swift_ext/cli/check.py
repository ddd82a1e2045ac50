"""`swift-ext check`: do the trainer and the rollout side preprocess images the same way?

A grounding reward scores boxes in the pixels the model saw. If the rollout side resizes
images differently from the trainer (another ``MAX_PIXELS``, ``--max_pixels``, ``MAX_NUM``
or qwen-vl-utils version), the rewards are computed against the wrong geometry and
nothing fails. Every `_geo` template logs its effective settings and their fingerprint
(``swift_ext.runlog.log_settings``) when it gets its processor; this module reads what
each side logged and names every setting that differs.

Capturing each side (both must use a ``*_geo`` template and load the plugin)::

    # trainer: the geo_log callback writes <run dir>/geometry_settings.jsonl
    swift rlhf --rlhf_type grpo ... --template qwen2_5_vl_geo \\
        --external_plugins templates/plugin.py --callbacks geo_log

    # rollout: name its role, and give it a directory (or keep its log)
    SWIFT_EXT_ROLE=rollout SWIFT_EXT_GEO_LOG_DIR=rollout_geo \\
        swift rollout --model ... --template qwen2_5_vl_geo \\
        --external_plugins templates/plugin.py 2>&1 | tee rollout.log

    swift-ext check output/v0-20250101-000000 rollout_geo    # or: ... rollout.log

Both processes may also share one ``SWIFT_EXT_GEO_LOG_DIR`` (the trainer writes there when
its template loads, before the callback moves it to the run directory); then
``swift-ext check DIR`` compares the roles found in it.

On this project's machines `swift rollout` itself cannot start: ms-swift 4.6.0 imports
vLLM at module load (``swift/infer_engine/vllm_engine.py``), so without vLLM it stops with
``ModuleNotFoundError: No module named 'vllm'`` before reading its arguments. The tests
therefore build the `_geo` template in separate Python processes, one per side, each with
its own settings.

Each argument is a run directory (its ``geometry_settings.jsonl``), such a file, or a
process's captured log (the ``preprocessing fingerprint`` lines are read from it). The
first argument is the trainer's side and the others the rollout's; a record that names a
role other than the default 'trainer' keeps it, and a file holding several roles is split
by role. Within a side, each process counts with the last settings it logged, and
processes whose settings differ are compared one by one.

Exit status: 0 when every side agrees, 1 when a setting differs, 2 when an input cannot
be read or holds nothing to compare.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..runlog import SETTINGS_FILE
from ..settings import diff_settings, settings_from_dict

TRAINER = 'trainer'
ROLLOUT = 'rollout'

# The line runlog.log_settings writes, after whatever prefix the logger adds. The part in
# parentheses and JSON settings are new in swift-ext 0.1; older lines hold a Python repr.
LOG_LINE = re.compile(r'swift-ext (?P<template>\S+) preprocessing fingerprint '
                      r'(?P<fingerprint>[0-9a-f]+)(?: \((?P<meta>[^)]*)\))?: (?P<settings>\{.*\})')


class DriftInputError(ValueError):
    """An input that cannot be read, or that holds nothing to compare; names the file."""


# --- reading ---------------------------------------------------------------------------------
def settings_path(path: str) -> str:
    """The file to read for ``path``: a run directory's settings file, or ``path`` itself."""
    if not os.path.isdir(path):
        return path
    candidate = os.path.join(path, SETTINGS_FILE)
    if os.path.isfile(candidate):
        return candidate
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise DriftInputError(f'{path}: cannot list it ({exc.strerror or exc}).') from exc
    below = sorted(os.path.join(path, d, SETTINGS_FILE) for d in names
                   if os.path.isfile(os.path.join(path, d, SETTINGS_FILE)))
    hint = (f'; these runs under it have one: {", ".join(below)}' if below else
            ' (a run with --callbacks geo_log, or a process with SWIFT_EXT_GEO_LOG_DIR set, '
            'writes it)')
    raise DriftInputError(f'{path}: directory has no {SETTINGS_FILE}{hint}.')


def load_fingerprints(path: str) -> List[dict]:
    """Every fingerprint record in a run directory, settings file or captured log, in order.

    Each record: ``role``, ``rank``, ``pid`` (None where a log line does not say),
    ``template``, ``fingerprint``, ``settings`` (a settings ``to_dict()``),
    ``time`` (None for log lines), ``source`` (the file read) and ``line`` (1-based).
    Lines that are neither are skipped, so a whole `swift` log can be passed.

    Raises:
        DriftInputError: ``path`` is missing or unreadable (the message names it).
    """
    source = settings_path(path)
    records = []
    try:
        with open(source, encoding='utf-8', errors='replace') as f:
            for number, text in enumerate(f, 1):  # a long run's log need not fit in memory
                record = _parse_line(text)
                if record is not None:
                    record.update(source=source, line=number)
                    records.append(record)
    except OSError as exc:
        raise DriftInputError(f'{source}: cannot read it ({exc.strerror or exc}).') from exc
    return records


def _parse_line(text: str) -> Optional[dict]:
    """A fingerprint record from one JSON line or log line; None for any other line."""
    text = text.strip()
    if text.startswith('{'):
        try:
            data = json.loads(text)
        except ValueError:
            return None  # a torn last line, or not ours
        if not isinstance(data, dict) or not isinstance(data.get('settings'), dict):
            return None
        settings = data['settings']
        return {'role': data.get('role'), 'rank': data.get('rank'), 'pid': data.get('pid'),
                'template': settings.get('template'),
                'fingerprint': data.get('fingerprint') or _fingerprint(settings),
                'settings': settings, 'time': data.get('time')}
    match = LOG_LINE.search(text)
    if match is None:
        return None
    try:
        settings = json.loads(match['settings'])
    except ValueError:
        return None
    if not isinstance(settings, dict):
        return None
    meta = dict(part.split(' ', 1) for part in (match['meta'] or '').split(', ') if ' ' in part)
    return {'role': meta.get('role'), 'rank': _int(meta.get('rank')),
            'pid': _int(meta.get('pid')), 'template': match['template'],
            'fingerprint': match['fingerprint'], 'settings': settings, 'time': None}


def _int(value: Optional[str]) -> Optional[int]:
    return int(value) if value is not None and value.isdigit() else None


def _fingerprint(settings: Mapping[str, Any]) -> Optional[str]:
    try:
        return settings_from_dict(settings).fingerprint()
    except (TypeError, ValueError):
        return None


# --- comparing --------------------------------------------------------------------------------
def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict:
    """How two fingerprint records (or two settings ``to_dict()``) differ.

    Returns:
        ``{'same': bool, 'fingerprints': [a, b], 'templates': [a, b],
        'differences': {setting: [a_value, b_value]}}``; library versions appear as
        ``versions.<package>``. The template's name is not a preprocessing setting.

    Example:
        >>> from swift_ext.settings import default_settings
        >>> trainer = default_settings('qwen2_5_vl_geo').to_dict()
        >>> rollout = default_settings('qwen2_5_vl_geo', max_pixels=50176).to_dict()
        >>> compare(trainer, rollout)['differences']
        {'max_pixels': [None, 50176]}
    """
    sa, sb = _settings_of(a), _settings_of(b)
    differences = {key: [va, vb] for key, (va, vb) in diff_settings(sa, sb).items()}
    return {'same': not differences,
            'fingerprints': [a.get('fingerprint') or _fingerprint(sa),
                             b.get('fingerprint') or _fingerprint(sb)],
            'templates': [sa.get('template'), sb.get('template')],
            'differences': differences}


def _settings_of(x: Mapping[str, Any]) -> Mapping[str, Any]:
    return x['settings'] if isinstance(x.get('settings'), Mapping) else x


def check(paths: Sequence[str]) -> dict:
    """Read every input and compare each distinct setting seen with the trainer's.

    Returns the report ``main`` prints: ``same``, ``fingerprint`` (when same),
    ``variants`` (one per distinct setting per side) and ``comparisons``.

    Raises:
        DriftInputError: an input is unreadable, holds no fingerprint, or there is only
        one setting of one side to look at.
    """
    sides: Dict[str, List[dict]] = {}
    for index, path in enumerate(paths):
        records = load_fingerprints(path)
        if not records:
            raise DriftInputError(
                f'{settings_path(path)}: no preprocessing fingerprint in it (was the process '
                'started with --external_plugins templates/plugin.py and a *_geo --template?).')
        roles = {r['role'] for r in records}
        for record in records:
            role = record['role']
            if len(roles) > 1 or role not in (None, TRAINER):
                label = role or (TRAINER if index == 0 else ROLLOUT)
            else:
                label = TRAINER if index == 0 else ROLLOUT
            sides.setdefault(label, []).append(record)
    ref_side = TRAINER if TRAINER in sides else next(iter(sides))
    order = [ref_side] + [label for label in sides if label != ref_side]
    variants = [v for label in order for v in _variants(label, sides[label])]
    if len(variants) < 2:
        only = variants[0]
        raise DriftInputError(
            f'{", ".join(only["sources"])}: holds only the {only["side"]} side\'s settings '
            f'(fingerprint {only["fingerprint"]}), nothing to compare; pass the other side too '
            '(swift-ext check TRAINER ROLLOUT), or start the rollout with '
            'SWIFT_EXT_ROLE=rollout.')
    reference = [v for v in variants if v['side'] == ref_side][-1]  # its latest process
    comparisons = []
    for variant in variants:
        if variant is not reference:
            result = compare(reference, variant)
            comparisons.append({'a': reference['label'], 'b': variant['label'], **result})
    same = all(c['same'] for c in comparisons)
    return {'same': same, 'fingerprint': reference['fingerprint'] if same else None,
            'reference': reference['label'], 'variants': variants, 'comparisons': comparisons}


def _variants(side: str, records: List[dict]) -> List[dict]:
    """One entry per distinct setting of a side, each process counted with its last record."""
    latest: Dict[Any, dict] = {}
    for record in records:  # file order is write order
        key = (record['source'], record['rank'], record['pid'])
        if record['pid'] is not None:
            key = (record['rank'], record['pid'])
        latest.pop(key, None)
        latest[key] = record  # the dict ends in the order processes last wrote
    groups: Dict[str, List[dict]] = {}
    for record in latest.values():
        groups.setdefault(json.dumps(_without_template(record['settings']), sort_keys=True),
                          []).append(record)
    out = []
    for group in groups.values():
        last = group[-1]
        pids = [r['pid'] for r in group if r['pid'] is not None]
        out.append({'side': side, 'label': side, 'template': last['template'],
                    'fingerprint': last['fingerprint'], 'pids': pids,
                    'sources': list(dict.fromkeys(r['source'] for r in group)),
                    'settings': last['settings']})
    if len(out) > 1:
        for v in out:
            v['label'] = (f'{side} (pid {", ".join(map(str, v["pids"]))})' if v['pids'] else
                          f'{side} ({", ".join(v["sources"])})')
    return out


def _without_template(settings: Mapping[str, Any]) -> dict:
    return {k: v for k, v in settings.items() if k != 'template'}


# --- output -----------------------------------------------------------------------------------
def format_report(report: dict) -> str:
    """The report as the lines `swift-ext check` prints."""
    lines = []
    for v in report['variants']:
        where = []
        if v['pids']:
            where.append(('pid ' if len(v['pids']) == 1 else 'pids ')
                         + ', '.join(map(str, v['pids'])))
        where.append(', '.join(v['sources']))
        lines.append(f'{v["label"]}: {v["template"]} fingerprint {v["fingerprint"]} '
                     f'({"; ".join(where)})')
    if report['same']:
        lines.append(f'same preprocessing (fingerprint {report["fingerprint"]})')
        return '\n'.join(lines)
    for c in report['comparisons']:
        a, b = c['a'], c['b']
        if c['same']:
            lines.append(f'{b}: same preprocessing as {a}')
            continue
        n = len(c['differences'])
        lines.append(f'preprocessing differs between {a} and {b} '
                     f'({n} setting{"s" if n != 1 else ""}):')
        for key, (va, vb) in c['differences'].items():
            lines.append(f'  {key}: {a} {_show(key, va)}, {b} {_show(key, vb)}')
    return '\n'.join(lines)


def _show(key: str, value: Any) -> str:
    if value is None:
        return 'not installed' if key.startswith('versions.') else 'unset'
    return value if isinstance(value, str) else json.dumps(value)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='swift-ext check',
        description='Compare the image preprocessing settings the trainer and the rollout '
                    'side logged. Exit status: 0 same, 1 different, 2 unreadable input.')
    parser.add_argument('paths', nargs='+', metavar='PATH',
                        help='the trainer side first, then rollout sides: a run directory, '
                             f'a {SETTINGS_FILE} file or a captured log; one PATH holding '
                             'several roles is compared within itself')
    parser.add_argument('--json', action='store_true', help='print the report as JSON')
    args = parser.parse_args(argv)
    try:
        report = check(args.paths)
    except DriftInputError as exc:
        print(f'swift-ext check: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report['same'] else 1


if __name__ == '__main__':
    sys.exit(main())
