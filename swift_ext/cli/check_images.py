"""`swift-ext check`, per image: the geometry the rollout side and the trainer recorded for the same files.

A fingerprint says the two sides' settings agree; the image lines say what each side really did. Lines with
``mode: rollout`` (GRPO's built-in rollout, vLLM colocate, a `swift rollout` server logging to its own
folder) are compared with ``mode: train`` lines of the same image on the fields the model sees: resized
size, canvas, tiles and visual tokens. An image may be recorded several times per side (epochs, per-row
limits): it differs when the rollout side recorded a geometry the trainer never did. ``basis`` says how the
rollout side knew it (read from the encode, the resized image it handed vLLM, or predicted where vLLM's
processor resizes).
"""
from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence

from ..runlog import GEOMETRY_GLOB
from .review.read import FileStatus, geometry_lines

FIELDS = ('resized_width', 'resized_height', 'canvas_width', 'canvas_height', 'num_tiles', 'num_tokens')
MAX_IMAGES = 200_000  # images remembered per side
MAX_EXAMPLES = 20
DECODE_ERRORS = (ValueError, RecursionError)


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(glob.escape(path), GEOMETRY_GLOB)))
    return []


def _collect(paths: Sequence[str]) -> tuple[dict, dict]:
    sides: dict[str, dict] = {'train': {}, 'rollout': {}}
    basis: dict[str, str] = {}
    for path in paths:
        for file in _files(path):
            for _, line in geometry_lines(file, FileStatus(file), decode=json.loads, errors=DECODE_ERRORS):
                if not isinstance(line, dict) or line.get('error') or not isinstance(line.get('image'), str):
                    continue
                side = sides.get(line.get('mode'))
                if side is None or (line['image'] not in side and len(side) >= MAX_IMAGES):
                    continue
                side.setdefault(line['image'], set()).add(tuple(line.get(k) for k in FIELDS))
                if line.get('mode') == 'rollout' and isinstance(line.get('basis'), str):
                    basis[line['image']] = line['basis']
    return sides, basis


def compare_images(paths: Sequence[str]) -> dict | None:
    """The per-image comparison of the run folders in ``paths``; None where one side logged no image."""
    sides, basis = _collect(paths)
    both = sorted(set(sides['train']) & set(sides['rollout']))
    if not both:
        return None
    differ = [image for image in both if not sides['rollout'][image] <= sides['train'][image]]
    examples = [{'image': image, 'basis': basis.get(image),
                 'rollout': [dict(zip(FIELDS, g, strict=True)) for g in sorted(sides['rollout'][image], key=str)],
                 'train': [dict(zip(FIELDS, g, strict=True)) for g in sorted(sides['train'][image], key=str)]}
                for image in differ[:MAX_EXAMPLES]]
    return {'compared': len(both), 'differ': len(differ), 'examples': examples,
            'rollout_only': len(set(sides['rollout']) - set(sides['train']))}


def format_images(result: dict) -> list[str]:
    lines = [f'images encoded for both rollouts and training: {result["compared"]}, '
             f'{result["differ"]} with a different geometry']
    for x in result['examples']:
        lines.append(f'  {x["image"]}: rollout {_sizes(x["rollout"])} ({x["basis"] or "basis unknown"}), '
                     f'training {_sizes(x["train"])}')
    if result['differ'] > len(result['examples']):
        lines.append(f'  ... and {result["differ"] - len(result["examples"])} more (--json lists the first '
                     f'{MAX_EXAMPLES})')
    return lines


def _sizes(geometries: list[dict]) -> str:
    return ', '.join(f'{g["resized_width"]}x{g["resized_height"]} {g["num_tokens"]} tokens' for g in geometries)
