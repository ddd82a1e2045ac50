"""ms-swift templates that record, per image, what the preprocessing really did.

For every template a family in ``swift_ext.families`` covers, ``<parent>_geo`` is a subclass
of the parent's own template class (taken from ms-swift's ``TEMPLATE_MAPPING``) with
:class:`GeoTemplateMixin` in front, registered with the parent's meta under the new name.
The mixin wraps the smallest hooks that see the data and otherwise defers to the parent,
so encodes stay identical:
- ``_load_image``: the size of the image ms-swift opened, before its `--max_pixels`;
- ``_preprocess_inputs``: each image's entry (identity, short name, size); an image that cannot
  be loaded is refused with its name;
- ``replace_tag``: the size the parent handed on, for families that resize there (Qwen); a
  refusal there names the image; for a video, the frames the parent sampled and resized
  (``swift_ext.video_record``), or a refusal naming the video;
- ``_encode_truncated``: the encode's entry that every mode passes (training, the PyTorch engine,
  vLLM / lmdeploy / sglang, each side of an rlhf pair): the result is queued with the recorder,
  or a failure noted for the images at fault;
- ``data_collator``: the recorder's collate trigger.
Reading the geometry and writing log lines happen later, a batch at a time (``swift_ext.recorder``).

Internal module: select a template with ``--template <parent>_geo``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

from swift.template import TEMPLATE_MAPPING, register_template

from . import loglines, runlog, video_record
from .cache import BoundedCache
from .families import families, family_of
from .families.base import ImageEntry
from .families.encoded import Shape
from .geometry import GeometryError, ImageGeometry
from .images import ROOT_ENV, classify, describe_source, read_image_size
from .recorder import DECODER_KEY, ENGINE_MODES, recorder
from .settings import PreprocessSettings
from .store import NO_LIMITS, STORE, row_limits_key, set_active_settings
from .warn import warn_once

logger = logging.getLogger(__name__)

# Keys of an encoded row that mean it holds images or videos (a collated batch lists only such rows); GOT-OCR
# 2.0's template keeps the images themselves (`images`) and makes their pixels in its collator.
IMAGE_KEYS = ('pixel_values', 'image_grid_thw', 'image_sizes', 'images', 'pixel_values_videos', 'video_grid_thw')


@functools.cache
def _versions() -> tuple:
    out = []
    for lib in ('ms-swift', 'qwen-vl-utils', 'qwen-omni-utils', 'transformers'):
        try:
            out.append((lib, metadata.version(lib)))
        except metadata.PackageNotFoundError:
            out.append((lib, None))
    return tuple(out)


@dataclasses.dataclass
class EncodeState:
    """What a `_geo` template knows of one encode while it runs (kept on the encode's inputs)."""

    entries: list  # ImageEntry per image, in image order
    fault: tuple | None = None  # (indices, GeometryError) where a hook refused an image (or a video)
    videos: list = dataclasses.field(default_factory=list)  # VideoEntry per video (families with video geometry)
    fault_kind: str = 'image'  # what `fault` names: 'image' or 'video'


class GeoTemplateMixin:
    """Records an ImageGeometry for every image the template encodes."""

    geo_family: Any = None  # the Family class
    geo_spec: Any = None  # its TemplateSpec for this parent

    def init_processor(self, processor) -> None:
        super().init_processor(processor)
        self.__dict__.pop('_geo_settings_cache', None)
        if processor is not None:
            settings = self.geo_settings()
            set_active_settings(settings)
            runlog.log_settings(settings)

    # --- settings -------------------------------------------------------------------
    def geo_settings(self) -> PreprocessSettings:
        """This template's effective preprocessing, read from its live state once."""
        cached = self.__dict__.get('_geo_settings_cache')
        key = (self.max_pixels, id(self.processor))
        if cached is not None and cached[0] == key:
            return cached[1]
        family = self.geo_family
        base = dataclasses.replace(family.default_settings(self.geo_spec.parent),
                                   swift_max_pixels=self.max_pixels, versions=_versions())
        settings = family.settings_from_template(self, base) if self.processor is not None else base
        self.__dict__['_geo_settings_cache'] = (key, settings, BoundedCache())
        return settings

    def geo_video_settings(self):
        """This template's video settings, read from its live state once (families with video geometry)."""
        memo = self.geo_memo()
        found = memo.get(('video_settings',))
        if found is None:
            found = memo[('video_settings',)] = self.geo_family.video_settings(self.geo_spec.parent, template=self)
        return found

    def geo_memo(self) -> dict:
        """A bounded dict for results computed from the current settings (cleared with them)."""
        return self._geo_current()[2]

    def _geo_current(self) -> tuple:
        """``(key, settings, memo)`` for the current settings, read once: one lookup for both."""
        cached = self.__dict__.get('_geo_settings_cache')
        if cached is None or cached[0] != (self.max_pixels, id(self.processor)):
            self.geo_settings()
            cached = self.__dict__['_geo_settings_cache']
        return cached

    def _geo_predict_all(self, entries, row_kwargs, limits) -> tuple:
        """``settings.predict`` for each image (None where its size is unknown), and which limit clamped it.

        Remembered per (size, row limits) for the current settings: a GRPO step encodes every
        prompt's images once per generation and datasets repeat sizes, so most images are sizes
        already seen. Only answers are remembered: a refusal is raised again (with this image's
        name) every time.
        """
        _, settings, memo = self._geo_current()
        # The limits' types too: True == 1 as a key, but the row check refuses a bool.
        types = None if limits is NO_LIMITS else tuple(type(v) for v in limits)
        predicted, clamps = [], []
        for entry in entries:
            size = entry.size
            if size is None:
                predicted.append(None)
                clamps.append(None)
                continue
            key = ('predict', tuple(size), limits, types)
            found = memo.get(key)
            if found is None:
                found = memo[key] = settings.predict(width=size[0], height=size[1], row_kwargs=row_kwargs,
                                                     name=entry.name)
            predicted.append(found[0])
            clamps.append(found[1])
        return predicted, clamps

    # --- hooks ----------------------------------------------------------------------
    def _load_image(self, image, load_images: bool):
        # ms-swift opens each image here, before its `--max_pixels` pre-rescale: the size of
        # what it opened is the original size, with no second read of the file.
        loaded = super()._load_image(image, load_images)
        sizes = getattr(_LOADED, 'sizes', None)
        if sizes is not None:
            sizes.append(tuple(loaded.size) if hasattr(loaded, 'size') else None)
        if 'exif' in getattr(loaded, 'info', ()):  # a dict lookup: only files with EXIF pay more
            _warn_if_rotated(loaded, image)
        return loaded

    def _preprocess_inputs(self, inputs) -> None:
        sources = list(inputs.images or [])
        _LOADED.sizes = []
        try:
            super()._preprocess_inputs(inputs)
        except Exception as exc:
            loaded = len(_LOADED.sizes)
            entries = [_entry(src, _LOADED.sizes[i] if i < loaded else None) for i, src in enumerate(sources)]
            bad = [i for i, e in enumerate(entries) if e.error is not None]
            if bad:
                inputs._geo = EncodeState(entries, (bad, entries[bad[0]].error))
                raise entries[bad[0]].error from exc
            if loaded >= len(sources):  # every image opened: not an image failure
                raise
            # ms-swift opens the images in order: the first one not opened is the one at fault.
            error = GeometryError(f'{entries[loaded].name}: image could not be loaded ({exc}).')
            inputs._geo = EncodeState(entries, ([loaded], error))
            raise error from exc
        finally:
            sizes, _LOADED.sizes = _LOADED.sizes, None
        videos = [video_record.video_entry(v) for v in inputs.videos] \
            if inputs.videos and self.geo_family.records_video(self.geo_spec.parent) else []
        inputs._geo = EncodeState(_entries(sources, sizes), videos=videos)

    def replace_tag(self, media_type, index, inputs):
        state = getattr(inputs, '_geo', None)
        entries = state.entries if state is not None else ()
        videos = state.videos if state is not None else ()
        try:
            context = super().replace_tag(media_type, index, inputs)
        except Exception as exc:
            if media_type == 'video' and index < len(videos):
                error = video_record.refusal(videos[index], exc)
                state.fault, state.fault_kind = ([index], error), 'video'
                raise error from exc
            if media_type != 'image' or index >= len(entries):
                raise
            entry = entries[index]
            error = entry.error or self._predict_error(entry, inputs)
            if error is None:
                error = GeometryError(f'{entry.name}: image could not be loaded ({exc}).')
            state.fault = ([index], error)
            raise error from exc
        if media_type == 'video' and index < len(videos):
            found = self.geo_family.replaced_video(self, inputs, index)
            if found is not None:
                videos[index] = dataclasses.replace(videos[index], found=found)
        elif self.geo_family.reads_replace_tag and media_type == 'image' and index < len(entries):
            size = self.geo_family.replaced_size(self, inputs, index)
            if size is not None:
                entries[index] = dataclasses.replace(entries[index], resized=size)
        return context

    def _encode_truncated(self, inputs):
        try:
            encoded = super()._encode_truncated(inputs)
        except Exception as exc:
            error = self._geo_fail(inputs)
            if error is None or error is exc:
                raise
            raise error from exc
        state = getattr(inputs, '_geo', None)
        if state is not None and (state.entries or state.videos):
            self._geo_defer(inputs, state, encoded)
        return encoded

    def data_collator(self, batch, *args, **kwargs):
        rows = [r for group in batch for r in group] if batch and isinstance(batch[0], list) else batch
        rows = [r for r in rows if _has_images(r)]  # before the collate: GOT-OCR 2.0's pops its `images`
        collated = super().data_collator(batch, *args, **kwargs)
        # A batch is complete here, in the process that encoded it (a dataloader worker or the trainer).
        recorder().collate(rows, collated, self.mode, DECODER_KEY if self.is_encoder_decoder else None)
        return collated

    # --- recording --------------------------------------------------------------------
    def _geo_defer(self, inputs, state, encoded) -> None:
        """Queue the encode's geometry: what the family reads of the output, as it is now (ms-swift may
        rebind keys later), of pixels the shape alone; of the inputs what the lines read. Nothing else."""
        # Plain loops, not comprehensions: each of those is one more function call in every encode.
        family, mode = self.geo_family, self.mode
        first = encoded[0] if isinstance(encoded, list) else encoded  # a list: --truncation_strategy split
        kept = {}
        for k in family.encoded_keys + family.video_encoded_keys if state.videos else family.encoded_keys:
            if k in first:
                kept[k] = first[k]
        for k in family.shape_keys:
            if hasattr(kept.get(k), 'shape'):
                kept[k] = Shape(kept[k].shape)
        engine = mode in ENGINE_MODES
        if engine:
            ids = ()
        elif first is encoded:
            ids = () if encoded.get('input_ids') is None else (encoded['input_ids'],)
        else:
            ids = tuple(b['input_ids'] for b in encoded if b.get('input_ids') is not None)
        # An encoder-decoder row's input_ids are its prompt alone: its answer tells rows apart (recorder.DECODER_KEY).
        decoder = first.get(DECODER_KEY) if ids and self.is_encoder_decoder else None
        row = (inputs.chat_template_kwargs, getattr(inputs, 'extra_kwargs', None), inputs.messages)
        recorder().defer(self._geo_resolve, (row, kept, tuple(state.entries), mode, time.time(),
                                              runlog.logging_encodes(), tuple(state.videos)),
                         ids=ids, mode=mode, step=runlog.STATE.step if engine else None, decoder=decoder)

    def _geo_resolve(self, row, encoded, entries, mode, when, logged, videos=()) -> loglines.ImageLines | None:
        """The encode's geometry into the stores; its log lines, where a run log takes them (``logged``).

        ``row``: the encode's ``(chat_template_kwargs, extra_kwargs, messages)``.
        """
        row_kwargs = row[0] or {}
        limits = row_limits_key(row_kwargs) if row_kwargs else NO_LIMITS
        predicted, clamps = self._geo_predict_all(entries, row_kwargs, limits)
        family, template = self.geo_family, self.geo_spec.name
        if mode in ENGINE_MODES and mode != 'transformers':  # the engine's own processor does the rest
            actual, basis = family.handed(self, encoded, entries, predicted)
        else:
            actual, basis = family.actual(self, encoded, entries, predicted), 'encode'
        images = []
        for i, entry in enumerate(entries):
            geo = actual[i] if i < len(actual) else predicted[i]
            if geo is None:
                continue
            mismatch = None if geo is predicted[i] else _mismatch(geo, predicted[i])
            if mismatch:
                warn_once(f'mismatch:{template}:{",".join(sorted(mismatch))}',
                          f'{entry.name}: template {template} produced {mismatch} '
                          f'(actual, predicted); swift-ext reports the actual values.')
            images.append((geo, entry.key, i, clamps[i], mismatch))
        STORE.put_all(limits, template, images)
        video_lines, video_basis = video_record.resolve(self, encoded, videos, row_kwargs, mode) if videos else ((), '')
        if not (images or video_lines) or not logged:
            return None
        return loglines.ImageLines(mode=mode, template=template,
                                   sample_id=_sample_id_later(row[1], row[2], entries + videos), images=images,
                                   basis=basis, when=when, videos=video_lines, video_basis=video_basis)

    def _predict_error(self, entry, inputs) -> GeometryError | None:
        if entry.size is None:
            return None
        try:
            self.geo_settings().predict(width=entry.size[0], height=entry.size[1],
                                        row_kwargs=inputs.chat_template_kwargs, name=entry.name)
        except GeometryError as exc:
            return exc
        return None

    def _geo_fail(self, inputs) -> GeometryError | None:
        """Note a failed encode for the images at fault (one line each); their error, or None if none was."""
        state = getattr(inputs, '_geo', None)
        if state is None or not (state.entries or state.videos):
            return None
        if state.fault is not None:
            indices, error = state.fault
        else:  # a processor that resizes inside _encode refused an image: find which
            errors = [(i, e.error or self._predict_error(e, inputs)) for i, e in enumerate(state.entries)]
            bad = [(i, err) for i, err in errors if err is not None]
            if not bad:
                return None  # not an image's fault (a length limit, a template error): nothing to note
            indices, error = [i for i, _ in bad], bad[0][1]
        if not runlog.logging_encodes():
            return error
        try:
            at_fault = state.videos if state.fault is not None and state.fault_kind == 'video' else state.entries
            lines = loglines.FailureLines(
                mode=self.mode, template=self.geo_spec.name, error=str(error),
                sample_id=_sample_id(inputs, state.entries), images=[(at_fault[i].key, i) for i in indices],
                kind=state.fault_kind if state.fault is not None else 'image')
            recorder().failed(lines, mode=self.mode, step=runlog.STATE.step if self.mode in ENGINE_MODES else None)
        except Exception:  # noting a failure must not mask the failure itself
            logger.debug('could not note a geometry failure', exc_info=True)
        return error


# Sizes of the images ms-swift's _load_image opened for the encode running in this thread
# (ms-swift's rollout engine encodes several samples at once in a thread pool).
_LOADED = threading.local()


def _entry(src, size) -> ImageEntry:
    """What is known of one image before resizing; reads the header only if not loaded."""
    info = _classify_remembered(src)  # one classification for both the key and the name
    error = None
    if size is None:
        try:
            size = read_image_size(src)
        except GeometryError as exc:
            error = exc
    return ImageEntry(key=info.key, name=info.name, size=size, error=error)


def _entries(sources, sizes) -> list[ImageEntry]:
    """The entries of an encode's images, ``sizes`` as ms-swift opened them (shorter: unknown)."""
    root, out = runlog.env(ROOT_ENV), []
    for i, src in enumerate(sources):
        size = sizes[i] if i < len(sizes) else None
        if size is None or type(src) is not str or len(src) > 4096:
            out.append(_entry(src, size))
            continue
        key = (src, size, root, None if _isabs(src) else os.getcwd())
        entry = _ENTRIES.get(key)
        if entry is None:
            info = _classify_remembered(src)
            entry = ImageEntry(key=info.key, name=info.name, size=size)
            if _resolved(info):
                _ENTRIES[key] = entry
        out.append(entry)
    return out


# Path strings classify() resolved to an absolute file (found on disk, or absolute as given, which no
# later file can change): a GRPO step encodes a prompt's images once per generation, and every
# epoch sees each file again. Entries are frozen, so one serves every encode that opened the file at
# that size (the root folder and working directory it was resolved from are part of the key).
_FOUND = BoundedCache()
_ENTRIES = BoundedCache()


# posixpath.isabs of a str is exactly this; os.path.isabs is three Python calls, paid per image per encode.
_isabs = (lambda path: path.startswith('/')) if os.sep == '/' and os.altsep is None else os.path.isabs


def _resolved(info) -> bool:
    return info.kind == 'path' and info.error is None and info.path == info.key  # found, or absolute


def _classify_remembered(src):
    if type(src) is not str or len(src) > 4096:
        return classify(src)
    key = (src, runlog.env(ROOT_ENV), None if _isabs(src) else os.getcwd())
    info = _FOUND.get(key)
    if info is None:
        info = classify(src)
        if _resolved(info):
            _FOUND[key] = info
    return info


def _warn_if_rotated(loaded, source) -> None:
    """One warning per run when an image carries an EXIF rotation that viewers apply and the model does not."""
    try:
        orientation = loaded.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block changes nothing for the model
        return
    if orientation not in (None, 1):
        warn_once('exif-rotation', f'{describe_source(source)}: EXIF orientation {orientation} rotates it in a '
                  'viewer, but ms-swift feeds the stored pixels: boxes drawn in a viewer are in another frame '
                  '(`swift-ext plan` lists every such image). Further such images are not warned about.')


def _has_images(row) -> bool:
    """Whether an encoded row (of an rlhf pair too: ``chosen_pixel_values``, ...) holds images."""
    if not isinstance(row, dict):
        return False
    for key in IMAGE_KEYS:  # the usual row: one lookup or two, before every key is scanned
        if row.get(key) is not None:
            return True
    return any(k.endswith(IMAGE_KEYS) and row[k] is not None for k in row)


def _mismatch(actual: ImageGeometry, predicted: ImageGeometry) -> dict | None:
    out = {}
    for field in ('resized_width', 'resized_height', 'num_tokens', 'num_tiles'):
        a, p = getattr(actual, field), getattr(predicted, field)
        if a != p:
            out[field] = [a, p]
    return out or None


def _sample_id(inputs, pending) -> str:
    return _sample_id_later(getattr(inputs, 'extra_kwargs', None), inputs.messages, pending)()


def _sample_id_later(extra_kwargs, messages, pending) -> Callable[[], str]:
    """The sample's id as a call made when its records are written: the dataset's id, else a hash of its text."""
    extra = extra_kwargs or {}
    for key in ('id', 'sample_id', 'prompt_id'):
        if extra.get(key) is not None:
            return functools.partial(str, extra[key])
    contents = [m.get('content') for m in (messages or [])[:2]]
    return functools.partial(_text_id, contents, [e.name for e in pending])


def _text_id(contents: list, names: list[str]) -> str:
    text = repr(contents) + (', '.join(names) or '<no image>')
    return hashlib.sha1(text.encode()).hexdigest()[:12]


GEO_TEMPLATES: dict[str, type] = {}


def geo_template_class(name: str) -> type:
    """The `_geo` class for template ``name``: the parent's class with the mixin in front."""
    if name not in GEO_TEMPLATES:
        family, spec = family_of(name)
        parent_cls = TEMPLATE_MAPPING[spec.parent].template_cls
        cls_name = ''.join(p.capitalize() for p in spec.parent.split('_')) + 'GeoTemplate'
        cls = type(cls_name, (GeoTemplateMixin, parent_cls), {
            'geo_family': family, 'geo_spec': spec,
            '__module__': __name__, '__qualname__': cls_name,
            '__doc__': f'{parent_cls.__name__} that records image geometry ({family.name} family).'})
        globals()[cls_name] = cls  # so the class pickles by name
        GEO_TEMPLATES[name] = cls
    return GEO_TEMPLATES[name]


def register_geo_templates() -> list[str]:
    """Register every `<parent>_geo` template; a second call changes nothing.

    A family's template whose parent this ms-swift does not have is left out (older releases).
    """
    names = []
    for family in families().values():
        for spec in family.templates:
            if spec.parent not in TEMPLATE_MAPPING:
                continue
            cls = geo_template_class(spec.name)
            existing = TEMPLATE_MAPPING.get(spec.name)
            if existing is None:
                register_template(dataclasses.replace(TEMPLATE_MAPPING[spec.parent], template_type=spec.name,
                                                      template_cls=cls))
            elif existing.template_cls is not cls:
                raise ValueError(f'template {spec.name!r} is already registered to '
                                 f'{existing.template_cls.__qualname__}.')
            names.append(spec.name)
    return sorted(names)
