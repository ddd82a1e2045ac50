"""What a `_geo` template knows of an encode's images before the parent resizes them: their entries (identity,
short name, size as opened), made when first needed, and the tables that spare a run repeating them. Internal
module (``swift_ext.templates`` keeps one ``EncodeState`` on each encode's inputs).
"""
from __future__ import annotations

import dataclasses
import operator
import os

from . import runlog
from .cache import BoundedCache
from .families.base import ImageEntry
from .geometry import GeometryError
from .images import ROOT_ENV, classify, read_image_size


class EncodeState:
    """What a `_geo` template knows of one encode while it runs (kept on the encode's inputs).

    ``count``: its images; ``sources``: the images as the row gave them and ``sizes`` as ms-swift opened them
    (shorter: unknown), until ``entries`` (an ImageEntry per image) are made from them when first asked: by the
    resolve (at a collate, where a batch's encodes are taken one after another in warm caches), by a refusal's
    path, or at once unless every image is an absolute path (an image in memory is keyed by a hash of its bytes,
    which are then not held; a relative path is resolved against the root folder and working directory of now).
    ``videos``: a VideoEntry per video (families with video geometry); ``fault``: (indices, GeometryError) where
    a hook refused an image (or a video, ``fault_kind``).
    """

    __slots__ = ('count', 'sources', 'sizes', 'videos', 'fault', 'fault_kind', 'resized', '_entries')

    def __init__(self, sources: list, sizes: list, videos: list | None = None, entries: list | None = None,
                 fault: tuple | None = None):
        self.count, self.videos, self._entries = len(sources), videos or [], entries
        self.sources, self.sizes = (sources, sizes) if entries is None else (None, None)
        self.fault, self.fault_kind, self.resized = fault, 'image', None

    @property
    def entries(self) -> list:
        if self._entries is None:
            self._entries = image_entries(self.sources, self.sizes)
            self.sources = self.sizes = None
            for index, size in (self.resized or {}).items():
                self._entries[index] = dataclasses.replace(self._entries[index], resized=size)
        return self._entries

    def set_resized(self, index: int, size: tuple) -> None:
        """The size the parent handed on for image ``index`` (families that resize in ``replace_tag``)."""
        if self._entries is not None:
            self._entries[index] = dataclasses.replace(self._entries[index], resized=size)
        else:
            self.resized = {**(self.resized or {}), index: size}


def image_entry(src, size) -> ImageEntry:
    """What is known of one image before resizing; reads the header only if not loaded."""
    info = _classify_remembered(src)  # one classification for both the key and the name
    error = None
    if size is None:
        try:
            size = read_image_size(src)
        except GeometryError as exc:
            error = exc
    return ImageEntry(key=info.key, name=info.name, size=size, error=error)


def image_entries(sources, sizes) -> list[ImageEntry]:
    """The entries of an encode's images, ``sizes`` as ms-swift opened them (shorter: unknown)."""
    root, out = runlog.env(ROOT_ENV), []
    for i, src in enumerate(sources):
        size = sizes[i] if i < len(sizes) else None
        if size is None or type(src) is not str or len(src) > 4096:
            out.append(image_entry(src, size))
            continue
        key = (src, size, root, None if isabs(src) else os.getcwd())
        found = _ENTRIES.get(key)
        if found is None:
            info = _classify_remembered(src)
            found = ImageEntry(key=info.key, name=info.name, size=size)
            if _resolved(info):
                _ENTRIES[key] = found
        out.append(found)
    return out


# Path strings classify() resolved to an absolute file (found on disk, or absolute as given, which no
# later file can change): a GRPO step encodes a prompt's images once per generation, and every
# epoch sees each file again. Entries are frozen, so one serves every encode that opened the file at
# that size (the root folder and working directory it was resolved from are part of the key).
_FOUND = BoundedCache()
_ENTRIES = BoundedCache()


# posixpath.isabs of a str is exactly this; os.path.isabs is three Python calls, paid per image per encode.
isabs = operator.methodcaller('startswith', '/') if os.sep == '/' and os.altsep is None else os.path.isabs


def _resolved(info) -> bool:
    return info.kind == 'path' and info.error is None and info.path == info.key  # found, or absolute


def _classify_remembered(src):
    if type(src) is not str or len(src) > 4096:
        return classify(src)
    key = (src, runlog.env(ROOT_ENV), None if isabs(src) else os.getcwd())
    info = _FOUND.get(key)
    if info is None:
        info = classify(src)
        if _resolved(info):
            _FOUND[key] = info
    return info
