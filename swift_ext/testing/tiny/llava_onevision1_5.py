"""Tiny checkpoints for ``llava_onevision1_5`` / ``llava_onevision2``: a Qwen2.5-VL model with their processor.

LLaVA-OneVision-1.5 / -2 ship their modeling code in the hub repository (``trust_remote_code``), which
is not available offline; what the templates' encode reads is the processor: transformers'
``Qwen2VLImageProcessor`` with patch 14, merge 2 (called with ``do_resize=False`` after qwen-vl-utils'
``fetch_image``) and Qwen's ``<|image_pad|>`` 151655, exactly what the tiny Qwen2.5-VL carries. Its
model runs the LLaVA-OneVision-1.5 template's ``_post_encode`` (``model.visual`` and the language
model's embeddings) in place of RiceViT + Qwen3; LLaVA-OneVision-2's vision tower takes
``patch_positions``, which Qwen2.5-VL's does not: the tests encode ``llava_onevision2`` with this
checkpoint's processor, but it has no tiny checkpoint of its own (nothing here would train under it).
Run with ``--model_type qwen2_5_vl --template llava_onevision1_5_geo``.
"""
from __future__ import annotations

from . import qwen

PARENTS = ('llava_onevision1_5',)


def build(parent: str, out_dir: str, seed: int) -> None:
    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    qwen.build('qwen2_5_vl', out_dir, seed)
