"""Which local image files a shareable page (`review`'s report.html, `score --html`) may embed.

Run folders, result files and datasets may come from someone else, and the page is made to be
shared: a ``geo_image`` naming ``/home/you/passport_scan.png`` must not put that file in it. An
image FILE is embedded only when it lies, every symlink resolved, under a confirmed folder:

- a folder given with ``--images-under DIR``;
- the run folder itself (review): files that came with the run;
- the folder of a dataset named on the command line (``score --dataset``);
- the folder of a dataset the run's ``args.json`` names (review), for the images that dataset
  file lists: args.json comes with the run, so the folder it points at is trusted only for what
  a dataset already on this machine names.

(`review` also requires the run's image_geometry records to name the image.) Images carried
inside the file itself (bytes, data URLs) are embedded: they disclose nothing local. Every image
left out says why on its card, and the gallery counts them.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..images import classify
from .bounded import refuse_reason
from .dataset import iter_rows, row_images

DATASET_SUFFIXES = ('.jsonl', '.json', '.parquet')
_SAMPLED = re.compile(r'#\d+$')  # ms-swift's `path#N` (N rows sampled)


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass
class ImagePolicy:
    """Confirmed folders (``(real path, why)``) and datasets whose listed images are confirmed."""

    folders: list[tuple[str, str]] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # files: their folder counts for the images they list
    notes: list[str] = field(default_factory=list)  # what could not be confirmed (a dataset not found here)
    _listed: dict[str, bool] = field(default_factory=dict)

    def add_folder(self, folder: str, why: str) -> None:
        self.folders.append((_real(folder), why))

    def describe(self) -> list[str]:
        out = [f'{folder} ({why})' for folder, why in self.folders]
        out += [f'{os.path.dirname(_real(d))} (the images {d} lists)' for d in self.datasets]
        return out

    def confirm(self, keys: Iterable[str]) -> None:
        """Look the ``keys`` not under a confirmed folder up in the datasets (one pass each)."""
        wanted = {k for k in keys if k not in self._listed and self._folder_of(_real(k)) is None}
        for dataset in self.datasets:
            folder = os.path.dirname(_real(dataset))
            candidates = {k for k in wanted if _under(_real(k), folder)}
            found = _listed_in(dataset, candidates) if candidates else set()
            for key in candidates:
                self._listed[key] = self._listed.get(key, False) or key in found

    def refusal(self, key: str) -> str | None:
        """None when the file ``key`` may be embedded, else why not (for its card)."""
        real = _real(key)
        if self._folder_of(real) is not None:
            return None
        if key not in self._listed:
            self.confirm([key])
        if self._listed.get(key):
            return None
        return (f"image not embedded: {key} is not under a confirmed folder (the run folder, a dataset's "
                'folder for the images it lists, --images-under DIR); pass --images-under to show it')

    def _folder_of(self, real: str) -> str | None:
        return next((f for f, _ in self.folders if _under(real, f)), None)


def _listed_in(dataset: str, keys: set[str]) -> set[str]:
    """The ``keys`` (absolute paths) that a row of ``dataset`` lists as an image."""
    names = {os.path.basename(k) for k in keys}
    found = set()
    try:
        for _, row in iter_rows(dataset):
            if isinstance(row, str):
                if not any(n in row for n in names):
                    continue  # most rows: no wanted name anywhere in the line, not parsed
                try:
                    row = json.loads(row)
                except (ValueError, RecursionError):
                    continue
            if not isinstance(row, dict):
                continue
            for src in row_images(row):
                found |= _matches(src, keys)
            if found == keys:
                break
    except (OSError, ValueError, RecursionError):
        pass
    return found


def _matches(src, keys: set[str]) -> set[str]:
    """The keys a dataset image names: the same absolute path, or a key ending in its relative path."""
    path = src.get('path') if isinstance(src, dict) else src
    if not isinstance(path, str) or not path or len(path) > 4096:
        return set()
    try:
        info = classify(path)
    except ValueError:  # a form ms-swift refuses (GeometryError): it names nothing
        return set()
    if info.kind != 'path':
        return set()
    text = os.path.normpath(path.strip())
    if os.path.isabs(text):
        return {k for k in keys if os.path.normpath(k) == text}
    return {k for k in keys if os.path.normpath(k).endswith(os.sep + text)}


def review_policy(run_dir: str, args: dict, images_under: Sequence[str] = ()) -> ImagePolicy:
    """The run folder, ``--images-under`` folders, and the datasets the run's args.json names."""
    policy = ImagePolicy()
    for folder in images_under:
        policy.add_folder(folder, '--images-under')
    policy.add_folder(run_dir, 'the run folder')
    for name in _dataset_names(args):
        path = _SAMPLED.sub('', name)
        if not path.endswith(DATASET_SUFFIXES):
            continue  # a hub dataset id: nothing on this machine to confirm by
        if refuse_reason(path) is None:
            policy.datasets.append(path)
        else:
            policy.notes.append(f'dataset {path} (named in args.json) is not a readable file here')
    return policy


def _dataset_names(args: dict) -> list[str]:
    names = []
    for key in ('dataset', 'val_dataset'):
        value = args.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and 0 < len(item) < 4096:
                names.append(item)
    return names[:64]
