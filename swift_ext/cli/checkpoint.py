"""`--model DIR` of `plan`, `show` and `score`: a template's settings read from a local checkpoint.

The settings come from the checkpoint as the live `_geo` template reads them: ms-swift's ``get_processor``
loads the folder's processor (its own pinpoints, slice counts, pixel limits), ``get_template`` builds the
template, and ``geo_settings`` reads it, exactly as in training. Without ``--model`` the tools use the
built-in defaults of the template's reference checkpoint (``describe_source`` says which).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..families import family_of
from ..settings import PreprocessSettings, settings_for
from .dataset import cut

# The files a checkpoint's processor is read from; a path to one of them means its folder.
PROCESSOR_FILES = ('preprocessor_config.json', 'processor_config.json', 'config.json', 'tokenizer_config.json')


class CheckpointError(ValueError):
    """A ``--model`` that cannot be read; the message names it, the rule and what was found."""


def checkpoint_dir(path: str) -> str:
    """The folder ``--model`` names: ``path`` itself, or the folder of a processor config file in it."""
    if os.path.isfile(path) and os.path.basename(path) in PROCESSOR_FILES:
        path = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(path):
        raise CheckpointError(f'--model {cut(path, 200)!r}: must be a local checkpoint folder (or one of its '
                              f'{", ".join(PROCESSOR_FILES)}), got '
                              + ('a file of another name.' if os.path.exists(path) else 'a path that does not exist.'))
    if not any(os.path.isfile(os.path.join(path, name)) for name in PROCESSOR_FILES):
        raise CheckpointError(f'--model {cut(path, 200)!r}: a checkpoint folder holds a processor config '
                              f'({", ".join(PROCESSOR_FILES[:2])}), and this folder has none of '
                              f'{", ".join(PROCESSOR_FILES)}.')
    return path


def settings_from_checkpoint(template: str, path: str, *, swift_max_pixels: int | None = None,
                             **overrides: Any) -> PreprocessSettings:
    """The settings ``template``'s `_geo` class runs with on the checkpoint at ``path`` (offline, no weights).

    ``overrides`` (None ignored) are swift-ext's own flags (``plan --max_num``), applied last as in
    ``settings_for``; the environment ms-swift reads applies as in training (the template reads it).
    """
    family, spec = family_of(template)
    folder = checkpoint_dir(path)
    from swift.model import get_processor
    from swift.template import get_template

    import swift_ext.plugin  # noqa: F401  (registers the `_geo` templates)
    model_type = spec.model_type or spec.parent
    try:
        processor = get_processor(folder, model_type=model_type, download_model=False)
        live = get_template(processor, template_type=spec.name, max_pixels=swift_max_pixels)
        settings = live.geo_settings()
    except Exception as exc:  # ms-swift and transformers raise many types on a folder they cannot read
        raise CheckpointError(f'--model {cut(path, 200)!r}: ms-swift could not read its processor as model type '
                              f'{model_type!r} for {spec.name} ({type(exc).__name__}: {cut(str(exc), 300)}).'
                              ) from None
    known = {f.name for f in dataclasses.fields(settings)}
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None and k in known})


def tool_settings(template: str, model: str | None, *, swift_max_pixels: int | None = None,
                  **overrides: Any) -> tuple[PreprocessSettings, str]:
    """``(settings, where they come from)``: the checkpoint's with ``model``, else the built-in defaults."""
    if model:
        settings = settings_from_checkpoint(template, model, swift_max_pixels=swift_max_pixels, **overrides)
        return settings, f'read from the checkpoint {model} (as the live template reads it)'
    settings = settings_for(template, swift_max_pixels=swift_max_pixels, **overrides)
    return settings, describe_defaults(template)


def describe_defaults(template: str) -> str:
    """Which built-in defaults a tool uses without ``--model``."""
    _, spec = family_of(template)
    return (f"built-in defaults of {spec.name} (its reference checkpoint's processor) and the environment; "
            "--model DIR reads a checkpoint's own")
