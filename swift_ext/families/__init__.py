"""The family registry: every `_geo` template and the geometry family that serves it.

Each module in this package defines one :class:`~swift_ext.families.base.Family` and calls
``register_family`` on it; the modules are found by name, so adding a family is adding a
module. Importing this package imports no torch, PIL or swift. Internal, like every module in it:
users reach the families through ``swift_ext.predict_geometry`` and the `_geo` templates; the
contract a family follows is ``base.py``'s docstring.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from ..geometry import COORDS
from .base import FAMILIES, Family, PreprocessSettings, TemplateSpec, settings_fields_from_dict

__all__ = ['COORDS', 'Family', 'PreprocessSettings', 'TemplateSpec', 'register_family', 'family_named',
           'family_of', 'template_names', 'settings_from_dict', 'parent_name']

_TEMPLATES: dict[str, tuple[type, TemplateSpec]] = {}  # '<parent>_geo' -> (family, spec)
_LOADED = False


def register_family(family: type) -> type:
    """Add ``family`` and its templates; the same class again is a no-op, a clash an error."""
    if not family.name:
        raise ValueError(f'{family.__qualname__}: a family needs a non-empty `name`.')
    existing = FAMILIES.get(family.name)
    if existing is not None:
        if existing is family:
            return family
        raise ValueError(f'family name {family.name!r} is already registered to {existing.__qualname__}.')
    for spec in family.templates:
        if spec.coords not in COORDS:
            raise ValueError(f'{family.__qualname__}: template {spec.parent!r} has coords '
                             f'{spec.coords!r}; should be one of {list(COORDS)}.')
        taken = _TEMPLATES.get(spec.name)
        if taken is not None:
            raise ValueError(f'template {spec.name!r} is already served by family {taken[0].name!r}.')
    FAMILIES[family.name] = family
    for spec in family.templates:
        _TEMPLATES[spec.name] = (family, spec)
    return family


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module != 'base' and not module.startswith('_'):
            importlib.import_module(f'{__name__}.{module}')


def parent_name(template: str) -> str:
    """'qwen2_5_vl_geo' -> 'qwen2_5_vl'; refuses names no family serves."""
    _load()
    name = template if template.endswith('_geo') else template + '_geo'
    if name not in _TEMPLATES:
        raise ValueError(f'template must be one of {template_names()}, got {template!r}.')
    return name[:-4]


def family_of(template: str) -> tuple[type, TemplateSpec]:
    """``(family, spec)`` serving ``template`` (a `_geo` name or its parent's name)."""
    parent = parent_name(template)
    return _TEMPLATES[parent + '_geo']


def family_named(name: str) -> type:
    _load()
    if name not in FAMILIES:
        raise ValueError(f'family must be one of {sorted(FAMILIES)}, got {name!r}.')
    return FAMILIES[name]


def template_names() -> list[str]:
    """Every registered `_geo` template name, sorted."""
    _load()
    return sorted(_TEMPLATES)


def families() -> dict[str, type]:
    _load()
    return dict(FAMILIES)


def settings_from_dict(d: Mapping) -> PreprocessSettings:
    """A settings object back from its ``to_dict()`` form (as logged)."""
    family = family_named(str(d.get('family')))
    cls = family.settings_cls
    return cls(**settings_fields_from_dict(cls, d))


def describe(template: str | None = None) -> list[dict]:
    """Rows of ``swift-ext templates``: name, parent, family, coords, box styles, tiny model."""
    _load()
    names = [template] if template else template_names()
    rows = []
    for name in names:
        family, spec = family_of(name)
        rows.append({'template': spec.name, 'parent': spec.parent, 'family': family.name,
                     'coords': spec.coords, 'box_styles': list(spec.box_styles),
                     'boxes_trained': spec.boxes_trained, 'coords_source': spec.coords_source,
                     # what geo_iou reads boxes as with SWIFT_EXT_COORDS unset (None: it scores None, never guesses)
                     'geo_iou_coords': spec.coords if spec.boxes_trained else None,
                     'tiny_model': spec.model_type is not None,
                     'model_type': spec.model_type, 'env': list(family.env_vars),
                     'verification': spec.verification,
                     'video': family.video_support_of.get(spec.parent, family.video_support)})
    return rows
