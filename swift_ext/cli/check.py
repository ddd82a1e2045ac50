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
be read or holds nothing to compare (never a traceback). Inputs must be regular files or
directories (a FIFO or device is refused by type); lines longer than ``MAX_LINE_CHARS`` are
skipped and counted; NaN equals NaN. With ``--dataset DATASET`` a difference is also measured:
how many of the dataset's images each side would resize differently (headers only).
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..cache import BoundedCache
from ..geometry import GeometryError
from ..images import classify, read_image_header
from ..runlog import SETTINGS_FILE
from ..settings import diff_settings, settings_from_dict
from .check_images import compare_images
from .check_report import format_report
from .check_videos import compare_videos
from .dataset import iter_rows, row_images, row_limits
from .text import ArgumentParser, echo

TRAINER = 'trainer'
ROLLOUT = 'rollout'
HEADER_CACHE = 65536  # image headers remembered while measuring a dataset (datasets repeat images)
MAX_LINE_CHARS = 1 << 20  # a settings line is a few KB; longer lines are skipped, never held whole

# The line runlog.log_settings writes, after whatever prefix the logger adds:
#   swift-ext TEMPLATE preprocessing fingerprint HEX (role R, rank N, pid P): {JSON}
# The part in parentheses is new in swift-ext 0.1. Found with str.find and parsed piece by
# piece (no backtracking regex over the whole line: linear in the line's length).
MARKER = ' preprocessing fingerprint '
_HEAD = re.compile(r'swift-ext (\S{1,200})$')
_TAIL = re.compile(r'([0-9a-f]{1,64})(?: \(([^)]{0,500})\))?: ')


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


def load_fingerprints(path: str) -> list[dict]:
    """Every fingerprint record in a run directory, settings file or captured log, in order.

    Each record: ``role``, ``rank``, ``pid`` (None where a log line does not say),
    ``template``, ``fingerprint``, ``settings`` (a settings ``to_dict()``),
    ``time`` (None for log lines), ``source`` (the file read) and ``line`` (1-based).
    Lines that are neither are skipped, so a whole `swift` log can be passed.

    Raises:
        DriftInputError: ``path`` is missing or unreadable (the message names it).
    """
    source = settings_path(path)
    _require_regular(source)
    records = []
    try:
        with open(source, encoding='utf-8', errors='replace') as f:
            for number, text in enumerate(_bounded_lines(f), 1):  # a long log need not fit in memory
                record = _parse_line(text) if text is not None else None
                if record is not None:
                    record.update(source=source, line=number)
                    records.append(record)
    except OSError as exc:
        raise DriftInputError(f'{source}: cannot read it ({exc.strerror or exc}).') from exc
    return records


def _require_regular(source: str) -> None:
    try:
        st = os.stat(source)
    except OSError as exc:
        raise DriftInputError(f'{source}: cannot read it ({exc.strerror or exc}).') from exc
    if not stat.S_ISREG(st.st_mode):
        raise DriftInputError(f'{source}: not a regular file or run directory; refused (a FIFO or device '
                              'could block or never end).')


def _bounded_lines(f):
    """Each line of ``f``, or None for a line over ``MAX_LINE_CHARS`` (skipped a piece at a time)."""
    while True:
        line = f.readline(MAX_LINE_CHARS)
        if not line:
            return
        if len(line) >= MAX_LINE_CHARS and not line.endswith('\n'):
            while line and not line.endswith('\n'):
                line = f.readline(MAX_LINE_CHARS)
            yield None
        else:
            yield line


def _parse_line(text: str) -> dict | None:
    """A fingerprint record from one JSON line or log line; None for any other line."""
    try:
        return _parse(text.strip())
    except (ValueError, RecursionError, TypeError, AttributeError):  # hostile JSON: not ours
        return None


def _parse(text: str) -> dict | None:
    if text.startswith('{'):
        try:
            data = json.loads(text)
        except ValueError:
            return None  # a torn last line, or not ours
        if not isinstance(data, dict) or not isinstance(data.get('settings'), dict):
            return None
        settings = data['settings']
        return {'role': _text(data.get('role')), 'rank': _int(data.get('rank')), 'pid': _int(data.get('pid')),
                'template': _text(settings.get('template')),
                'fingerprint': _text(data.get('fingerprint')) or _fingerprint(settings),
                'settings': settings, 'time': data.get('time')}
    at = text.find(MARKER)
    if at < 0:
        return None
    head = _HEAD.search(text, max(0, at - 220), at)
    tail = _TAIL.match(text, at + len(MARKER))
    if head is None or tail is None:
        return None
    brace = tail.end()
    if text[brace:brace + 1] != '{':
        return None
    try:
        settings, _ = json.JSONDecoder().raw_decode(text, brace)
    except ValueError:
        return None
    if not isinstance(settings, dict):
        return None
    meta = dict(part.split(' ', 1) for part in (tail.group(2) or '').split(', ') if ' ' in part)
    return {'role': meta.get('role'), 'rank': _int(meta.get('rank')),
            'pid': _int(meta.get('pid')), 'template': head.group(1),
            'fingerprint': tail.group(1), 'settings': settings, 'time': None}


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    """An integer rank or pid from a log (a string of digits or an int), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 1 << 63 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _fingerprint(settings: Mapping[str, Any]) -> str | None:
    try:
        return settings_from_dict(settings).fingerprint()
    except Exception:  # settings of a shape no family accepts: no fingerprint to show
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
    differences = {key: [va, vb] for key, (va, vb) in _diff(sa, sb).items() if _canonical(va) != _canonical(vb)}
    return {'same': not differences,
            'fingerprints': [a.get('fingerprint') or _fingerprint(sa),
                             b.get('fingerprint') or _fingerprint(sb)],
            'templates': [sa.get('template'), sb.get('template')],
            'differences': differences}


def _diff(sa: Mapping[str, Any], sb: Mapping[str, Any]) -> dict:
    """``diff_settings``, with a malformed ``versions`` entry compared as a plain value."""
    if not all(isinstance(x.get('versions', {}), (dict, type(None))) for x in (sa, sb)):
        sa = {**sa, 'versions': {'(malformed)': _canonical(sa.get('versions'))}}
        sb = {**sb, 'versions': {'(malformed)': _canonical(sb.get('versions'))}}
    return diff_settings(sa, sb)


def _canonical(value: Any) -> str:
    """One text per value, with NaN equal to NaN at any depth and key order ignored."""
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _settings_of(x: Mapping[str, Any]) -> Mapping[str, Any]:
    return x['settings'] if isinstance(x.get('settings'), Mapping) else x


def impact(dataset: str, reference: Mapping[str, Any], variant: Mapping[str, Any]) -> dict:
    """How many of ``dataset``'s images two settings resize differently (image headers only).

    Returns ``{'dataset', 'images', 'resized_differently', 'fail_on_one_side', 'visual_tokens': [a, b],
    'unreadable_images', 'remote_images_not_checked', 'unreadable_rows'}``; ``{'error': ...}`` where a
    side's settings are of no known family. Relative image paths resolve as ms-swift's do.

    Raises:
        DriftInputError: the dataset cannot be read.
    """
    try:
        a, b = settings_from_dict(_settings_of(reference)), settings_from_dict(_settings_of(variant))
    except Exception as exc:
        return {'dataset': dataset, 'error': f'settings of no known family ({str(exc)[:200]})'}
    out = {'dataset': dataset, 'images': 0, 'resized_differently': 0, 'fail_on_one_side': 0,
           'visual_tokens': [0, 0], 'unreadable_images': 0, 'remote_images_not_checked': 0, 'unreadable_rows': 0}
    headers = BoundedCache(HEADER_CACHE)
    try:
        _require_regular(dataset)
        for _, row in iter_rows(dataset):
            parsed = _row(row)
            if parsed is None:
                out['unreadable_rows'] += 1
                continue
            images, limits = parsed
            for src in images:
                out['images'] += 1
                header = _image_header(out, src, headers)
                if header is not None:
                    _compare_image(out, a, b, header, limits)
    except OSError as exc:
        raise DriftInputError(f'{dataset}: cannot read it ({exc.strerror or exc}).') from exc
    except ValueError as exc:
        raise DriftInputError(f'{dataset}: {str(exc)[:300]}') from exc
    return out


def _row(row: Any) -> tuple[list, dict] | None:
    """A dataset row's images and pixel limits, or None for a row that is not a readable object."""
    try:
        row = json.loads(row) if isinstance(row, str) else row
        if isinstance(row, Exception) or not isinstance(row, dict):
            return None
        return row_images(row), row_limits(row)
    except (ValueError, RecursionError):
        return None


def _image_header(out: dict, src: Any, headers: dict[str, Any]):
    """The image's header (file headers remembered by path), or None (counted as remote or unreadable)."""
    info = classify(src)
    if info.kind == 'url':
        out['remote_images_not_checked'] += 1
        return None
    try:
        if info.kind != 'path':
            return read_image_header(src)
        if info.path not in headers:
            headers[info.path] = read_image_header(src)
        return headers[info.path]
    except GeometryError:
        out['unreadable_images'] += 1
        return None


def _compare_image(out: dict, a, b, header, limits: Mapping) -> None:
    geos = []
    for i, settings in enumerate((a, b)):
        try:
            geo = settings.predict(width=header.width, height=header.height, row_kwargs=limits)[0]
            out['visual_tokens'][i] += geo.num_tokens
            geos.append((geo.resized_width, geo.resized_height, geo.num_tokens, geo.num_tiles))
        except (GeometryError, ValueError, TypeError):
            geos.append(None)
    if (geos[0] is None) != (geos[1] is None):
        out['fail_on_one_side'] += 1
    elif geos[0] != geos[1]:
        out['resized_differently'] += 1


def check(paths: Sequence[str], dataset: str | None = None) -> dict:
    """Read every input and compare each distinct setting seen with the trainer's.

    Returns the report ``main`` prints: ``same``, ``fingerprint`` (when same),
    ``variants`` (one per distinct setting per side) and ``comparisons``.

    Raises:
        DriftInputError: an input is unreadable, holds no fingerprint, or there is only
        one setting of one side to look at.
    """
    sides: dict[str, list[dict]] = {}
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
    images, videos = compare_images(paths), compare_videos(paths)
    lines_same = all(x is None or x['differ'] == 0 for x in (images, videos))
    if len(variants) < 2 and (images, videos) != (None, None):  # one process encoded both (GRPO, vLLM colocate)
        return {'same': lines_same, 'fingerprint': variants[0]['fingerprint'] if lines_same else None,
                'reference': variants[0]['label'], 'variants': variants, 'comparisons': [], 'images': images,
                'videos': videos}
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
            if dataset is not None and not result['same']:
                comparisons[-1]['impact'] = impact(dataset, reference, variant)
    same = all(c['same'] for c in comparisons) and lines_same
    return {'same': same, 'fingerprint': reference['fingerprint'] if same else None,
            'reference': reference['label'], 'variants': variants, 'comparisons': comparisons, 'images': images,
            'videos': videos}


def _variants(side: str, records: list[dict]) -> list[dict]:
    """One entry per distinct setting of a side, each process counted with its last record."""
    latest: dict[Any, dict] = {}
    for record in records:  # file order is write order
        key = (record['source'], record['rank'], record['pid'])
        if record['pid'] is not None:
            key = (record['rank'], record['pid'])
        latest.pop(key, None)
        latest[key] = record  # the dict ends in the order processes last wrote
    groups: dict[str, list[dict]] = {}
    for record in latest.values():
        groups.setdefault(_canonical(_without_template(record['settings'])), []).append(record)
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


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog='swift-ext check',
        description='Compare the image preprocessing settings the trainer and the rollout '
                    'side logged. Exit status: 0 same, 1 different, 2 unreadable input.')
    parser.add_argument('paths', nargs='+', metavar='PATH',
                        help='the trainer side first, then rollout sides: a run directory, '
                             f'a {SETTINGS_FILE} file or a captured log; one PATH holding '
                             'several roles is compared within itself')
    parser.add_argument('--json', action='store_true', help='print the report as JSON')
    parser.add_argument('--dataset', metavar='DATASET',
                        help='a .jsonl / .json dataset: count how many of its images each differing side '
                             'would resize differently (headers only)')
    args = parser.parse_args(argv)
    try:
        report = check(args.paths, dataset=args.dataset)
        text = json.dumps(report, indent=2) if args.json else format_report(report)
    except DriftInputError as exc:
        echo(f'swift-ext check: {exc}', err=True)
        return 2
    except Exception as exc:  # input of a shape nothing above foresaw: still exit 2, never a traceback
        echo(f'swift-ext check: cannot compare {", ".join(args.paths)[:300]}: {type(exc).__name__}: '
             f'{str(exc)[:300]}', err=True)
        return 2
    echo(text)
    return 0 if report['same'] else 1


if __name__ == '__main__':
    sys.exit(main())
