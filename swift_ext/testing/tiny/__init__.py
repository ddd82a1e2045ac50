"""Tiny, randomly initialised vision-language checkpoints that ms-swift loads offline.

``make_tiny_model(parent, out_dir)`` writes a complete local checkpoint (config, safetensors
weights, tokenizer, processor configs, chat template) of a few million parameters for the
ms-swift parent template ``parent``, so tests and smoke runs exercise the real ms-swift code
paths without downloading a model. The weights are random: the model emits filler tokens,
and a run proves plumbing, not learning.

One recipe module per family in this package declares ``PARENTS`` and ``build(parent,
out_dir, seed)``; the module is found by name, like the families themselves. What is kept
real in every recipe is what geometry depends on: the special-token ids the parent template
hard-codes and the public checkpoint's image-processor settings.

What a run needs: ``--model DIR --model_type MT --template T --check_model false``.
``run_flags(parent)`` gives ``MT`` and ``T`` (the `_geo` template); each family module names
``MT`` in its ``TemplateSpec.model_type``, and ``swift-ext templates`` shows which parents have a
recipe. Pass ``--model_type`` always: ms-swift 4.6 matches a local directory first on its *name*,
then on ``config.json``'s ``architectures``, and several architectures are shared (Qwen2-VL with
``qwen2_gme``, Qwen3-VL with ``qwen3_vl_emb`` / ``qwen3_vl_reranker``), so it refuses to guess
("Failed to automatically match `model_type`"); ``--template`` is needed too, since one model
type serves several templates (``qwen2_5_vl`` and ``mimo_vl``).

In-process, set ``template.model = model`` before collating, as ms-swift's SFT pipeline
does: a Qwen template without a model reloads the checkpoint by path to compute rope
indices, *without* the model type, which fails for qwen2_vl and qwen3_vl.
The marker file ``tiny_model.json`` records ``model_type`` and ``template`` (the flags a run
needs) beside the parent, seed and builder version.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import shutil
import tempfile
import time

logger = logging.getLogger(__name__)

DEFAULT_SEED = 0
# Bumped whenever the layout of a tiny checkpoint changes, so an old one is not reused.
BUILDER_VERSION = 2
MARKER_FILE = 'tiny_model.json'
# Files every recipe writes; the marker is written last, so its presence means complete.
REQUIRED_FILES = ('config.json', 'model.safetensors', 'tokenizer_config.json', MARKER_FILE)

_RECIPES: dict[str, object] = {}


def recipes() -> dict[str, object]:
    """``{parent template: recipe module}`` for every tiny checkpoint this package can build."""
    if not _RECIPES:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if info.name == 'common':
                continue
            module = importlib.import_module(f'{__name__}.{info.name}')
            for parent in getattr(module, 'PARENTS', ()):
                if parent in _RECIPES and _RECIPES[parent] is not module:
                    raise ValueError(f'tiny recipe for {parent!r} is defined twice '
                                     f'({_RECIPES[parent].__name__}, {module.__name__}).')
                _RECIPES[parent] = module
    return dict(_RECIPES)


def parents() -> tuple:
    """The parent templates a tiny checkpoint can be built for, sorted."""
    return tuple(sorted(recipes()))


def run_flags(parent: str) -> dict[str, str]:
    """``{'model_type': ..., 'template': ...}``: what `swift sft/rlhf` needs for a tiny ``parent``."""
    from ...families import family_of
    _, spec = family_of(parent)
    return {'model_type': spec.model_type or parent, 'template': spec.name}


def _check_parent(parent: str) -> None:
    if parent not in recipes():
        raise ValueError(f'`family` should be one of {", ".join(parents())}, got {parent!r}.')


def _marker(parent: str, seed: int) -> dict:
    return {'family': parent, 'seed': seed, 'builder_version': BUILDER_VERSION, **run_flags(parent)}


def _read_marker(out_dir: str) -> dict | None:
    path = os.path.join(out_dir, MARKER_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError:  # a damaged marker marks nothing
        return None


def is_complete(parent: str, out_dir: str, seed: int = DEFAULT_SEED) -> bool:
    """Whether ``out_dir`` holds a complete tiny ``parent`` checkpoint built with ``seed``."""
    if _read_marker(out_dir) != _marker(parent, seed):
        return False
    return all(os.path.isfile(os.path.join(out_dir, name)) for name in REQUIRED_FILES)


def make_tiny_model(parent: str, out_dir: str, *, seed: int = DEFAULT_SEED) -> str:
    """Write a tiny randomly initialised checkpoint for ``parent`` to ``out_dir``; return its path.

    Deterministic (same ``seed``, same bytes) and idempotent: if ``out_dir`` already holds a
    complete checkpoint of that parent and seed, it is returned untouched. The checkpoint is
    built in a sibling temporary directory and moved into place, so ``out_dir`` never holds
    half a checkpoint. ``out_dir`` must not exist or be empty otherwise.

    Example:
        >>> make_tiny_model('qwen2_5_vl', '/tmp/tiny-qwen2_5_vl')  # doctest: +SKIP
        '/tmp/tiny-qwen2_5_vl'

        then ``swift sft --model /tmp/tiny-qwen2_5_vl --model_type qwen2_5_vl
        --template qwen2_5_vl_geo ...`` (``run_flags`` gives both names).
    """
    _check_parent(parent)
    out_dir = os.path.abspath(out_dir)
    if is_complete(parent, out_dir, seed):
        logger.info('Reusing tiny %s checkpoint in %s', parent, out_dir)
        return out_dir
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        marker = _read_marker(out_dir) if os.path.isdir(out_dir) else None
        found = f'a tiny checkpoint {marker}' if marker else 'other files'
        raise FileExistsError(f'`out_dir` should be missing or empty, or hold a tiny {parent!r} '
                              f'checkpoint with seed {seed}; {out_dir!r} holds {found}.')
    start = time.perf_counter()
    base = os.path.dirname(out_dir)
    os.makedirs(base, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.partial-', dir=base)
    try:
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it private; a model directory is not
        recipes()[parent].build(parent, tmp_dir, seed)
        with open(os.path.join(tmp_dir, MARKER_FILE), 'w', encoding='utf-8') as f:
            json.dump(_marker(parent, seed), f, indent=2)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty, checked above
        try:
            os.rename(tmp_dir, out_dir)
        except OSError:
            # Someone else finished the same build first: theirs is as good as ours.
            if not is_complete(parent, out_dir, seed):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info('Built tiny %s checkpoint in %s (%.1f s, %.1f MB)', parent, out_dir,
                time.perf_counter() - start, directory_size(out_dir) / 1e6)
    return out_dir


def directory_size(path: str) -> int:
    """Total size in bytes of the regular files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total
