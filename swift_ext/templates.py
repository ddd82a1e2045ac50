"""ms-swift templates that record, per image, what the preprocessing really did.

Each `<base>_geo` template subclasses ms-swift's own template class for that family and
is registered with the parent's meta under a new name. The overrides wrap the smallest
hooks that see the data and otherwise defer to the parent, so encodes stay identical:
- ``_preprocess_inputs``: the user's image (file header) before ms-swift's `--max_pixels`;
- ``replace_tag``: the image after qwen-vl-utils' smart_resize (Qwen);
- ``_encode``: visual tokens / tiles actually produced (``image_grid_thw``, or the runs of
  image-context tokens for InternVL).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from importlib import metadata
from typing import Any, Dict, List, Optional

from swift.template import TEMPLATE_MAPPING, register_template
from swift.template.templates.internvl import Internvl2Template, InternvlhfTemplate
from swift.template.templates.qwen import Qwen2_5VLTemplate, Qwen2VLTemplate, Qwen3VLTemplate

from . import geolog
from .geometry import GeometryError, ImageGeometry, describe_source, read_image_size
from .records import STORE, image_key, row_limits_key, set_active_settings, warn_once
from .settings import INTERNVL, QWEN, PreprocessSettings, default_settings

logger = logging.getLogger(__name__)

@functools.lru_cache(maxsize=None)
def _versions() -> tuple:
    out = []
    for lib in ('ms-swift', 'qwen-vl-utils', 'transformers'):
        try:
            out.append((lib, metadata.version(lib)))
        except metadata.PackageNotFoundError:
            out.append((lib, None))
    return tuple(out)


class GeoTemplateMixin:
    """Records an ImageGeometry for every image the template encodes."""

    geo_base: str = ''

    def init_processor(self, processor) -> None:
        super().init_processor(processor)
        if processor is not None:
            settings = self.geo_settings()
            set_active_settings(settings)
            geolog.log_settings(settings)

    # --- settings -------------------------------------------------------------------
    def geo_settings(self) -> PreprocessSettings:
        """This template's effective preprocessing, read from its live state."""
        base = default_settings(self.geo_base)
        changes: Dict[str, Any] = {'swift_max_pixels': self.max_pixels, 'versions': _versions()}
        if base.family == QWEN:
            from qwen_vl_utils import vision_process as vp
            patch = getattr(self.processor.image_processor, 'patch_size', base.patch_size)
            if self.version != 'v3':
                patch = 14  # ms-swift calls fetch_image without image_patch_size for Qwen2/2.5
            merge = getattr(self.processor.image_processor, 'merge_size', base.merge_size)
            factor = patch * vp.SPATIAL_MERGE_SIZE
            changes.update(patch_size=patch, merge_size=merge,
                           min_pixels=vp.IMAGE_MIN_TOKEN_NUM * factor ** 2,
                           max_pixels=vp.IMAGE_MAX_TOKEN_NUM * factor ** 2)
        elif base.tile_order == 'hf':
            ip = self.processor.image_processor
            size = getattr(ip, 'crop_size', None) or getattr(ip, 'size', None) or {}
            changes.update(image_size=int(size.get('height', 448)),
                           min_num=int(getattr(ip, 'min_patches', 1)),
                           max_num=int(getattr(ip, 'max_patches', 12)),
                           tokens_per_tile=int(getattr(self.processor, 'image_seq_length', 256)))
        else:
            changes.update(image_size=int(self.input_size), max_num=int(self.max_num),
                           tokens_per_tile=int((self.input_size // 14) ** 2 * 0.25))
        return dataclasses.replace(base, **changes)

    # --- hooks ----------------------------------------------------------------------
    def _load_image(self, image, load_images: bool):
        # ms-swift opens each image here, before its `--max_pixels` pre-rescale: the size of
        # what it opened is the original size, with no second read of the file.
        loaded = super()._load_image(image, load_images)
        sizes = getattr(_LOADED, 'sizes', None)
        if sizes is not None:
            sizes.append(tuple(loaded.size) if hasattr(loaded, 'size') else None)
        return loaded

    def _preprocess_inputs(self, inputs) -> None:
        sources = list(inputs.images or [])
        _LOADED.sizes = []
        try:
            super()._preprocess_inputs(inputs)
        except Exception as exc:
            pending = [_entry(src, None) for src in sources]
            bad = next((e for e in pending if e['error'] is not None), None)
            self._geo_fail(inputs, pending, exc if bad is None else bad['error'])
            if bad is not None:
                raise bad['error'] from exc
            raise GeometryError(f'{_names(pending)}: image could not be loaded ({exc}).') from exc
        finally:
            sizes, _LOADED.sizes = _LOADED.sizes, None
        inputs._geo_pending = [_entry(src, sizes[i] if i < len(sizes) else None)
                               for i, src in enumerate(sources)]

    def replace_tag(self, media_type, index, inputs):
        pending = getattr(inputs, '_geo_pending', None)
        try:
            context = super().replace_tag(media_type, index, inputs)
        except Exception as exc:
            if media_type != 'image' or not pending or index >= len(pending):
                raise
            entry = pending[index]
            err = entry['error'] or self._predict_error(entry, inputs)
            if err is None:
                err = GeometryError(f'{entry["name"]}: image could not be loaded ({exc}).')
            self._geo_fail(inputs, pending, err)
            raise err from exc
        if (media_type == 'image' and pending and index < len(pending)
                and self.geo_family == QWEN and hasattr(inputs.images[index], 'size')):
            pending[index]['resized'] = tuple(inputs.images[index].size)
        return context

    def _encode(self, inputs) -> Dict[str, Any]:
        encoded = super()._encode(inputs)
        pending = getattr(inputs, '_geo_pending', None)
        if pending:
            try:
                self._geo_record(inputs, encoded, pending)
            except Exception as exc:  # recording must never cost the user a sample
                warn_once(f'record:{type(exc).__name__}',
                          f'swift-ext could not record image geometry ({exc!r}); '
                          'training continues without it.')
        return encoded

    # --- recording --------------------------------------------------------------------
    def _actual_tokens(self, encoded, n_images: int) -> List[Optional[int]]:
        raise NotImplementedError

    def _geo_record(self, inputs, encoded, pending) -> None:
        settings = self.geo_settings()
        row_kwargs = dict(inputs.chat_template_kwargs or {})
        tokens = self._actual_tokens(encoded, len(pending))
        records, sample_id = [], _sample_id(inputs, pending)
        for i, entry in enumerate(pending):
            if entry['size'] is None:
                continue
            w, h = entry['size']
            predicted, clamped = settings.predict(width=w, height=h, row_kwargs=row_kwargs,
                                                  name=entry['name'])
            actual = self._actual_geometry(predicted, entry, tokens[i] if i < len(tokens) else None,
                                           settings, encoded, i)
            mismatch = _mismatch(actual, predicted)
            if mismatch:
                warn_once(f'mismatch:{settings.template}:{",".join(sorted(mismatch))}',
                          f'{entry["name"]}: template {settings.template} produced {mismatch} '
                          f'(actual, predicted); swift-ext reports the actual values.')
            STORE.put(entry['key'], row_limits_key(row_kwargs), settings.template, actual)
            records.append(geolog.image_record(
                geometry=actual, key=entry['key'], image_index=i, mode=self.mode,
                template=settings.template, clamped=clamped, mismatch=mismatch,
                sample_id=sample_id))
        geolog.emit(records)

    def _actual_geometry(self, predicted: ImageGeometry, entry, tokens, settings, encoded, i):
        if tokens is None:
            return predicted
        tiles = tokens // settings.tokens_per_tile if settings.family == INTERNVL else 1
        if settings.family == INTERNVL and tiles != predicted.num_tiles:
            # The tile count is a fact; keep the predicted grid only if it agrees.
            return dataclasses.replace(predicted, num_tokens=tokens, num_tiles=tiles)
        return dataclasses.replace(predicted, num_tokens=tokens)

    def _predict_error(self, entry, inputs) -> Optional[GeometryError]:
        if entry['size'] is None:
            return None
        try:
            self.geo_settings().predict(width=entry['size'][0], height=entry['size'][1],
                                        row_kwargs=inputs.chat_template_kwargs,
                                        name=entry['name'])
        except GeometryError as exc:
            return exc
        return None

    def _geo_fail(self, inputs, pending, error) -> None:
        try:
            geolog.emit([geolog.failure_record(
                key=e['key'], image_index=i, mode=self.mode, template=self.geo_base + '_geo',
                error=str(error), sample_id=_sample_id(inputs, pending))
                for i, e in enumerate(pending)])
        except Exception:  # logging a failure must not mask the failure itself
            logger.debug('could not log a geometry failure', exc_info=True)


class _QwenGeo(GeoTemplateMixin):
    geo_family = QWEN

    def _actual_tokens(self, encoded, n_images):
        grid = _grid_rows(encoded)
        if grid is None:
            return []
        merge = self.processor.image_processor.merge_size ** 2
        return [t * h * w // merge for t, h, w in grid]

    def _actual_geometry(self, predicted, entry, tokens, settings, encoded, i):
        grid = _grid_rows(encoded)
        resized = entry.get('resized')
        if grid is None or resized is None or i >= len(grid):
            return predicted
        t, gh, gw = grid[i]
        return dataclasses.replace(predicted, resized_width=resized[0], resized_height=resized[1],
                                   grid=(t, gh, gw), num_tokens=tokens)


def _grid_rows(encoded) -> Optional[list]:
    """``image_grid_thw`` as ``[t, h, w]`` lists of ints: one tensor call, not one per value."""
    grid = encoded.get('image_grid_thw')
    if grid is None:
        return None
    return grid.tolist() if hasattr(grid, 'tolist') else [[int(x) for x in g] for g in grid]


class _InternvlGeo(GeoTemplateMixin):
    geo_family = INTERNVL

    def _actual_tokens(self, encoded, n_images):
        # Each image is one contiguous run of <IMG_CONTEXT> ids (tiles x tokens per tile).
        ctx = self._img_context_id()
        runs, length = [], 0
        for tok in encoded['input_ids']:
            if tok == ctx:
                length += 1
            elif length:
                runs.append(length)
                length = 0
        if length:
            runs.append(length)
        return runs if len(runs) == n_images else []

    def _img_context_id(self) -> int:
        if not hasattr(self, '_geo_ctx_id'):
            self._geo_ctx_id = self.tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>')
        return self._geo_ctx_id


# Sizes of the images ms-swift's _load_image opened for the encode running in this thread
# (ms-swift's rollout engine encodes several samples at once in a thread pool).
_LOADED = threading.local()


def _entry(src, size) -> dict:
    """What is known of one image before resizing; reads the header only if not loaded."""
    entry = {'key': image_key(src), 'name': describe_source(src), 'size': size,
             'error': None, 'resized': None}
    if size is None:
        try:
            entry['size'] = read_image_size(src)
        except GeometryError as exc:
            entry['error'] = exc
    return entry


def _names(pending) -> str:
    return ', '.join(e['name'] for e in pending) or '<no image>'


def _mismatch(actual: ImageGeometry, predicted: ImageGeometry) -> Optional[dict]:
    out = {}
    for field in ('resized_width', 'resized_height', 'num_tokens', 'num_tiles'):
        a, p = getattr(actual, field), getattr(predicted, field)
        if a != p:
            out[field] = [a, p]
    return out or None


def _sample_id(inputs, pending) -> str:
    extra = getattr(inputs, 'extra_kwargs', None) or {}
    for key in ('id', 'sample_id', 'prompt_id'):
        if extra.get(key) is not None:
            return str(extra[key])
    import hashlib
    text = repr([m.get('content') for m in (inputs.messages or [])][:2]) + _names(pending)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class Qwen2VLGeoTemplate(_QwenGeo, Qwen2VLTemplate):
    geo_base = 'qwen2_vl'


class Qwen2_5VLGeoTemplate(_QwenGeo, Qwen2_5VLTemplate):
    geo_base = 'qwen2_5_vl'


class Qwen3VLGeoTemplate(_QwenGeo, Qwen3VLTemplate):
    geo_base = 'qwen3_vl'


class Internvl2GeoTemplate(_InternvlGeo, Internvl2Template):
    geo_base = 'internvl2_5'


class Internvl3_5GeoTemplate(_InternvlGeo, Internvl2Template):
    geo_base = 'internvl3_5'


class InternvlhfGeoTemplate(_InternvlGeo, InternvlhfTemplate):
    geo_base = 'internvl_hf'


GEO_TEMPLATES = {cls.geo_base + '_geo': cls for cls in (
    Qwen2VLGeoTemplate, Qwen2_5VLGeoTemplate, Qwen3VLGeoTemplate, Internvl2GeoTemplate,
    Internvl3_5GeoTemplate, InternvlhfGeoTemplate)}


def register_geo_templates() -> List[str]:
    """Register every `<base>_geo` template; a second call changes nothing."""
    for name, cls in GEO_TEMPLATES.items():
        if name in TEMPLATE_MAPPING:
            continue
        parent = TEMPLATE_MAPPING[cls.geo_base]
        register_template(dataclasses.replace(parent, template_type=name, template_cls=cls))
    return list(GEO_TEMPLATES)
