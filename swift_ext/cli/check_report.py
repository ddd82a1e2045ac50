"""`swift-ext check`'s report: what it prints for the settings each side logged and the images both encoded."""
from __future__ import annotations

import json
from typing import Any

from .check_images import format_images
from .check_videos import format_videos


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
    if report.get('images'):
        lines += format_images(report['images'])
    if report.get('videos'):
        lines += format_videos(report['videos'])
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
        if 'impact' in c:
            lines.append('  ' + _format_impact(c['impact'], a, b))
    return '\n'.join(lines)


def _format_impact(x: dict, a: str, b: str) -> str:
    if 'error' in x:
        return f'impact on {x["dataset"]}: not measured: {x["error"]}'
    text = (f'impact on {x["dataset"]}: {x["resized_differently"]} of {x["images"]} images resize differently, '
            f'{x["fail_on_one_side"]} fail on one side only; visual tokens {a} {x["visual_tokens"][0]}, '
            f'{b} {x["visual_tokens"][1]}')
    skipped = [f'{x[k]} {k.replace("_", " ")}' for k in ('unreadable_images', 'remote_images_not_checked',
                                                          'unreadable_rows') if x[k]]
    return text + (f' ({", ".join(skipped)})' if skipped else '')


def _show(key: str, value: Any) -> str:
    if value is None:
        return 'not installed' if key.startswith('versions.') else 'unset'
    return value if isinstance(value, str) else json.dumps(value)
