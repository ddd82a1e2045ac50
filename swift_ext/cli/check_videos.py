"""`swift-ext check`, per video: the frames, times and size the rollout side and the trainer recorded.

Video lines (``kind: video``) with ``mode: rollout`` are compared with ``mode: train`` lines of the same
video and clip window on what the model sees (``video_rows.COMPARED``): the frames sampled, the sample
rate, the frame size, the tokens and the time encoding. A video differs when the rollout side recorded a
geometry the trainer never did; each difference is named field by field.

A difference users meet with Qwen3-VL and ``--use_vllm``: ms-swift 4.6's ``Qwen2VLTemplate.replace_tag``
(``swift/template/templates/qwen.py``) shifts the ``frames_indices`` it hands vLLM to the clip's first
frame when ``video_start`` clips the video, and leaves them on the source video in training. The same
frames are sampled, but the rollout prompt's ``<t seconds>`` count from the clip start and the training
prompt's from the start of the source video: a model trained on one axis answers on it in the other.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from ..video_rows import COMPARED
from .check_images import DECODE_ERRORS, MAX_EXAMPLES, _files
from .review.read import FileStatus, geometry_lines

MAX_VIDEOS = 200_000  # videos remembered per side
SHOWN_ITEMS = 6  # list items shown per field in the text report
VLLM_REBASE = ("ms-swift 4.6 hands vLLM the clip's frames_indices shifted to its first frame "
               '(Qwen2VLTemplate.replace_tag, vLLM mode) but keeps them on the source video in training: '
               'the rollout prompt counts <t seconds> from the clip start, training from the video start. '
               "geo_tiou reads a completion on its prompt's axis (SWIFT_EXT_TIME_AXIS=prompt, the default).")


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def _collect(paths: Sequence[str]) -> tuple[dict, dict]:
    sides: dict[str, dict] = {'train': {}, 'rollout': {}}
    basis: dict = {}
    for path in paths:
        for file in _files(path):
            for _, line in geometry_lines(file, FileStatus(file), decode=json.loads, errors=DECODE_ERRORS):
                if not isinstance(line, dict) or line.get('kind') != 'video' or line.get('error'):
                    continue
                side = sides.get(line.get('mode'))
                key = (line.get('video'), line.get('video_start'), line.get('video_end'))
                if side is None or not isinstance(key[0], str) or (key not in side and len(side) >= MAX_VIDEOS):
                    continue
                try:
                    side.setdefault(key, set()).add(tuple(_frozen(line.get(k)) for k in COMPARED))
                except TypeError:  # a field of a shape no writer makes (a dict): not comparable
                    continue
                if line.get('mode') == 'rollout' and isinstance(line.get('basis'), str):
                    basis[key] = line['basis']
    return sides, basis


def _named(a: tuple, b: tuple) -> dict:
    """``{field: [rollout's, training's]}`` for each compared field that differs."""
    out = {}
    for name, x, y in zip(COMPARED, a, b, strict=True):
        if x != y:
            out[name] = [list(x) if isinstance(x, tuple) else x, list(y) if isinstance(y, tuple) else y]
    return out


def compare_videos(paths: Sequence[str]) -> dict | None:
    """The per-video comparison of the run folders in ``paths``; None where one side logged no video."""
    sides, basis = _collect(paths)
    both = sorted(set(sides['train']) & set(sides['rollout']), key=str)
    if not both:
        return None
    differ = [key for key in both if not sides['rollout'][key] <= sides['train'][key]]
    examples, rebased = [], 0
    for key in differ:
        train = sorted(sides['train'][key], key=str)
        for rollout in sorted(sides['rollout'][key] - sides['train'][key], key=str):
            # the training geometry closest to this rollout one: fewest fields apart
            nearest = min(train, key=lambda t: len(_named(rollout, t)))
            fields = _named(rollout, nearest)
            is_rebase = set(fields) <= {'timestamps', 'timestamp_origin'} and 'timestamp_origin' in fields
            rebased += is_rebase
            if len(examples) < MAX_EXAMPLES:
                examples.append({'video': key[0], 'video_start': key[1], 'video_end': key[2],
                                 'basis': basis.get(key), 'differences': fields, 'vllm_clip_rebase': is_rebase})
    return {'compared': len(both), 'differ': len(differ), 'examples': examples, 'vllm_clip_rebase': rebased,
            'rollout_only': len(set(sides['rollout']) - set(sides['train']))}


def format_videos(result: dict) -> list[str]:
    lines = [f'videos encoded for both rollouts and training: {result["compared"]}, '
             f'{result["differ"]} with different frames, times or size']
    for x in result['examples']:
        window = '' if x['video_start'] is None and x['video_end'] is None else \
            f' (clip {x["video_start"]}-{x["video_end"]} s)'
        lines.append(f'  {x["video"]}{window}, rollout ({x["basis"] or "basis unknown"}) vs training:')
        for name, (rollout, train) in x['differences'].items():
            lines.append(f'    {name}: rollout {_show(rollout)}, training {_show(train)}')
    shown = len({(x['video'], x['video_start'], x['video_end']) for x in result['examples']})
    if result['differ'] > shown:
        lines.append(f'  ... and {result["differ"] - shown} more videos (--json lists the first {MAX_EXAMPLES} '
                     'differences)')
    if result['vllm_clip_rebase']:
        lines.append(f'  {result["vllm_clip_rebase"]} of them differ only in the time axis: {VLLM_REBASE}')
    return lines


def _show(value) -> str:
    if isinstance(value, list):
        more = f', ... ({len(value)} in all)' if len(value) > SHOWN_ITEMS else ''
        return '[' + ', '.join(map(str, value[:SHOWN_ITEMS])) + more + ']'
    return str(value)
