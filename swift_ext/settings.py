"""A template's effective image preprocessing, and the geometry it predicts for an image.

Pure data and arithmetic (no torch or swift import), so that rewards running in another
process, ``swift-ext plan`` and the rollout/trainer drift check can all use it. The
templates fill it from their live state (``swift_ext.templates.settings_of``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Optional, Tuple

from .geometry import (IMAGE_MAX_TOKEN_NUM, IMAGE_MIN_TOKEN_NUM, GeometryError, ImageGeometry,
                       internvl_geometry, qwen_geometry)

QWEN = 'qwen'
INTERNVL = 'internvl'


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that decides an image's geometry for one template, as it stands."""

    template: str
    family: str  # QWEN or INTERNVL
    coords: str  # how the model writes boxes: 'abs' (resized pixels) or 'norm1000'
    box_style: str  # the family's output style, for the format reward
    # ms-swift's own pre-rescale (`--max_pixels`), applied before the model's resize.
    swift_max_pixels: Optional[int] = None
    # Qwen smart_resize
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: Optional[int] = None
    max_pixels: Optional[int] = None
    # Whether a row's chat_template_kwargs max_pixels feeds ms-swift's pre-rescale (InternVL)
    # or qwen-vl-utils' fetch_image (Qwen).
    row_max_pixels_rescales: bool = False
    # InternVL tiling
    image_size: int = 448
    min_num: int = 1
    max_num: int = 12
    use_thumbnail: bool = True
    tile_order: str = 'swift'  # 'swift' (ms-swift _dynamic_preprocess) or 'hf' (GotOcr2)
    tokens_per_tile: int = 256
    versions: Tuple[Tuple[str, str], ...] = ()

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d['versions'] = dict(self.versions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'PreprocessSettings':
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields['versions'] = tuple(sorted(dict(fields.get('versions') or {}).items()))
        return cls(**fields)

    def fingerprint(self) -> str:
        """A short hash of every setting that changes geometry (the name excluded)."""
        d = self.to_dict()
        d.pop('template')
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def with_limits(self, *, swift_max_pixels: Optional[int] = None,
                    max_pixels: Optional[int] = None, min_pixels: Optional[int] = None,
                    max_num: Optional[int] = None) -> 'PreprocessSettings':
        """These settings as ms-swift's knobs would change them.

        ``swift_max_pixels`` is the `--max_pixels` flag (a pre-rescale for every model);
        ``max_pixels`` / ``min_pixels`` are the Qwen `MAX_PIXELS` / `MIN_PIXELS` variables,
        which ms-swift turns into whole token counts (value // factor**2); ``max_num`` is
        InternVL's `MAX_NUM`.
        """
        changes = {}
        if swift_max_pixels is not None:
            changes['swift_max_pixels'] = swift_max_pixels
        if self.family == QWEN:
            if max_pixels is not None:
                changes['max_pixels'] = max_pixels // self.factor ** 2 * self.factor ** 2
            if min_pixels is not None:
                changes['min_pixels'] = min_pixels // self.factor ** 2 * self.factor ** 2
        if max_num is not None:
            changes['max_num'] = max_num
        return replace(self, **changes)

    def predict(self, *, width: int, height: int, row_kwargs: Optional[Mapping] = None,
                name: str = 'image') -> Tuple[ImageGeometry, Optional[str]]:
        """Predicted geometry of a ``width`` x ``height`` file, and which limit clamped it.

        ``row_kwargs`` is the dataset row's ``chat_template_kwargs`` (per-row limits).
        """
        row_kwargs = row_kwargs or {}
        pre_max = self.swift_max_pixels
        if self.row_max_pixels_rescales and row_kwargs.get('max_pixels') is not None:
            pre_max = row_kwargs['max_pixels']
        w, h = swift_rescaled_size(width=width, height=height, max_pixels=pre_max, name=name)
        clamped = 'max_pixels' if (w, h) != (width, height) else None
        if self.family == QWEN:
            min_pixels = row_kwargs.get('min_pixels', self.min_pixels)
            max_pixels = row_kwargs.get('max_pixels', self.max_pixels)
            if min_pixels is None:
                min_pixels = IMAGE_MIN_TOKEN_NUM * self.factor ** 2
            if max_pixels is None:
                max_pixels = IMAGE_MAX_TOKEN_NUM * self.factor ** 2
            geo = qwen_geometry(width=w, height=h, patch_size=self.patch_size,
                                merge_size=self.merge_size, min_pixels=min_pixels,
                                max_pixels=max_pixels, name=name)
            rounded = (max(self.factor, round(h / self.factor) * self.factor)
                       * max(self.factor, round(w / self.factor) * self.factor))
            if rounded > max_pixels:
                clamped = 'max_pixels'
            elif rounded < min_pixels and clamped is None:
                clamped = 'min_pixels'
        else:
            ratios = hf_tile_ratios(self.min_num, self.max_num) if self.tile_order == 'hf' else None
            geo = internvl_geometry(width=w, height=h, image_size=self.image_size,
                                    min_num=self.min_num, max_num=self.max_num,
                                    use_thumbnail=self.use_thumbnail, ratios=ratios, name=name)
            geo = replace(geo, num_tokens=geo.num_tiles * self.tokens_per_tile)
        return replace(geo, original_width=width, original_height=height), clamped


def swift_rescaled_size(*, width: int, height: int, max_pixels: Optional[int],
                        name: str = 'image') -> Tuple[int, int]:
    """The size ms-swift's ``rescale_image`` gives (its `--max_pixels` pre-rescale)."""
    if max_pixels is None or max_pixels <= 0 or width * height <= max_pixels:
        return width, height
    ratio = width / height
    height_scaled = math.sqrt(max_pixels / ratio)
    new_w, new_h = int(height_scaled * ratio), int(height_scaled)
    if new_w <= 0 or new_h <= 0:
        raise GeometryError(f'{name}: --max_pixels {max_pixels} shrinks {width}x{height} '
                            f'to a zero side ({new_w}x{new_h}).')
    return new_w, new_h


def hf_tile_ratios(min_num: int, max_num: int) -> list:
    """Tile grids in the order transformers' GotOcr2 image processor (InternVL-hf) tries them."""
    ratios = [(w, h) for w in range(1, max_num + 1) for h in range(1, max_num + 1)
              if min_num <= w * h <= max_num]
    return sorted(ratios, key=lambda x: x[0] * x[1])


# Defaults of each registered `_geo` template, for use without a loaded model (`plan`,
# rewards in a process that never built the template). Values are those of the real
# checkpoints' processors and ms-swift 4.6 templates.
_FAMILY_DEFAULTS = {
    'qwen2_vl': dict(family=QWEN, coords='norm1000', box_style='qwen2_box_tokens'),
    'qwen2_5_vl': dict(family=QWEN, coords='abs', box_style='qwen2_5_json'),
    'qwen3_vl': dict(family=QWEN, coords='norm1000', box_style='qwen2_5_json', patch_size=16),
    'internvl_hf': dict(family=INTERNVL, coords='norm1000', box_style='internvl_box',
                        tile_order='hf', row_max_pixels_rescales=True),
    'internvl2_5': dict(family=INTERNVL, coords='norm1000', box_style='internvl_box',
                        row_max_pixels_rescales=True),
    'internvl3_5': dict(family=INTERNVL, coords='norm1000', box_style='internvl_box',
                        row_max_pixels_rescales=True),
}
BASE_TEMPLATES = tuple(_FAMILY_DEFAULTS)


def base_template_name(name: str) -> str:
    """'qwen2_5_vl_geo' -> 'qwen2_5_vl'; refuses names this package does not support."""
    base = name[:-4] if name.endswith('_geo') else name
    if base not in _FAMILY_DEFAULTS:
        raise ValueError(f'template must be one of {sorted(k + "_geo" for k in _FAMILY_DEFAULTS)}, '
                         f'got {name!r}.')
    return base


def default_settings(template: str, **limits: Optional[int]) -> PreprocessSettings:
    """Settings a `_geo` template has with the real checkpoint's processor.

    ``limits`` are those of :meth:`PreprocessSettings.with_limits`.
    """
    base = base_template_name(template)
    s = PreprocessSettings(template=base + '_geo', **_FAMILY_DEFAULTS[base])
    return s.with_limits(**limits)


def settings_from_environment(template: str, *, swift_max_pixels: Optional[int] = None,
                              min_pixels: Optional[int] = None, max_num: Optional[int] = None,
                              env: Optional[Mapping[str, str]] = None) -> PreprocessSettings:
    """The settings a `_geo` template runs with under ms-swift's flags and environment.

    Reads `MAX_PIXELS` / `MIN_PIXELS` (Qwen) and `MAX_NUM` / `INPUT_SIZE` (ms-swift's own
    InternVL tiling) the way ms-swift does; the transformers-native InternVL reads neither.
    """
    env = os.environ if env is None else env
    base = default_settings(template)
    limits: dict = {'swift_max_pixels': swift_max_pixels}
    if base.family == QWEN:
        limits['max_pixels'] = _env_int(env, 'MAX_PIXELS')
        limits['min_pixels'] = min_pixels if min_pixels is not None else _env_int(env, 'MIN_PIXELS')
    elif base.tile_order == 'swift':
        limits['max_num'] = max_num if max_num is not None else _env_int(env, 'MAX_NUM')
        size = _env_int(env, 'INPUT_SIZE')
        if size:
            base = replace(base, image_size=size, tokens_per_tile=int((size // 14) ** 2 * 0.25))
    else:
        limits['max_num'] = max_num
    return base.with_limits(**limits)


def _env_int(env: Mapping[str, str], name: str) -> Optional[int]:
    value = env.get(name)
    if value in (None, ''):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'environment variable {name} must be an integer, got {value!r}.') from None


def diff_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict:
    """``{setting: (a_value, b_value)}`` for every geometry setting that differs."""
    out = {}
    for key in sorted(set(a) | set(b)):
        if key == 'template':
            continue
        va, vb = a.get(key), b.get(key)
        if key == 'versions':
            for lib in sorted(set(va or {}) | set(vb or {})):
                if (va or {}).get(lib) != (vb or {}).get(lib):
                    out[f'versions.{lib}'] = ((va or {}).get(lib), (vb or {}).get(lib))
        elif va != vb:
            out[key] = (va, vb)
    return out
