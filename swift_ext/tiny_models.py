"""Tiny, randomly initialised vision-language checkpoints that ms-swift loads offline.

``make_tiny_model(family, out_dir)`` writes a complete local checkpoint (config,
safetensors weights, tokenizer, image/video processor configs, chat template) of a few
million parameters, so tests and smoke runs exercise the real ms-swift code paths
without downloading a model. The weights are random: the model emits filler tokens, and
a run proves plumbing, not learning.

What is kept real, because geometry depends on it:

- the special-token ids (ms-swift hard-codes ``151655`` / ``151656`` for Qwen's image
  and video pads), built into a small byte-level BPE padded with filler tokens;
- the image-processor settings: Qwen2-VL / Qwen2.5-VL patch 14, merge 2, temporal
  patch 2, min_pixels 3136, max_pixels 12845056; Qwen3-VL patch 16, merge 2;
  InternVL3 448-pixel tiles, at most 12, 256 tokens a tile (patch 14, downsample 0.5).

What ms-swift needs to recognise a tiny checkpoint in a directory ``DIR``
(ms-swift 4.6.0 matches first on the directory's *name* against its model list, then
on ``config.json``'s ``architectures``; measured with ``get_processor`` /
``get_template``):

==============  ======================================  ==================  ===============
family          architectures                           ``--model_type``    ``--template``
==============  ======================================  ==================  ===============
qwen2_vl        Qwen2VLForConditionalGeneration         ``qwen2_vl`` (1)    ``qwen2_vl`` (3)
qwen2_5_vl      Qwen2_5_VLForConditionalGeneration      ``qwen2_5_vl`` (2)  ``qwen2_5_vl`` (3)
qwen3_vl        Qwen3VLForConditionalGeneration         ``qwen3_vl`` (1)    ``qwen3_vl`` (4)
internvl_hf     InternVLForConditionalGeneration        ``internvl`` (2)    ``internvl_hf`` (4)
==============  ======================================  ==================  ===============

(1) Required: the architecture is shared (``qwen2_gme``; ``qwen3_vl_emb``,
    ``qwen3_vl_reranker``), so ms-swift refuses to guess ("Failed to automatically
    match `model_type`").
(2) Detected from the architecture; passing it does no harm.
(3) Required: the model type also serves ``qvq`` (Qwen2-VL) and ``mimo_vl``
    (Qwen2.5-VL).
(4) Detected once the model type is known; passing it does no harm.

So the safe command line is always ``--model DIR --model_type MT --template T`` (with
a ``*_geo`` template in place of ``T`` where this project registers one).
``SWIFT_MODEL_TYPES`` and ``SWIFT_TEMPLATES`` hold the two right-hand columns.

In-process, set ``template.model = model`` before collating, as ms-swift's SFT pipeline
does: a Qwen template without a model reloads the checkpoint by path to compute rope
indices, *without* the model type, which fails for qwen2_vl and qwen3_vl.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

FAMILIES: Tuple[str, ...] = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl', 'internvl_hf')

# The names ms-swift 4.6.0 registers for each family (see the module docstring).
SWIFT_MODEL_TYPES: Dict[str, str] = {
    'qwen2_vl': 'qwen2_vl',
    'qwen2_5_vl': 'qwen2_5_vl',
    'qwen3_vl': 'qwen3_vl',
    'internvl_hf': 'internvl',
}
SWIFT_TEMPLATES: Dict[str, str] = {
    'qwen2_vl': 'qwen2_vl',
    'qwen2_5_vl': 'qwen2_5_vl',
    'qwen3_vl': 'qwen3_vl',
    'internvl_hf': 'internvl_hf',
}

DEFAULT_SEED = 0
# Bumped whenever the layout of a tiny checkpoint changes, so an old one is not reused.
BUILDER_VERSION = 1
MARKER_FILE = 'tiny_model.json'
# Files every family writes; the marker is written last, so its presence means complete.
REQUIRED_FILES = ('config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json',
                  'preprocessor_config.json', 'video_preprocessor_config.json', MARKER_FILE)

# Model dimensions: the 151,936 x 32 embedding (tied with the LM head) is most of the
# ~5 M parameters; everything else is a rounding error.
HIDDEN_SIZE = 32
NUM_HEADS = 2  # head_dim 16
MROPE_SECTION = [2, 3, 3]  # must sum to head_dim / 2
QWEN_VOCAB_SIZE = 151936
# InternVL3-1B-hf has 151,674 rows (Qwen2.5's tokens plus 9 InternVL ones); one more here,
# for the `<video>` token that transformers adds to the tokenizer as a named special token.
INTERNVL_VOCAB_SIZE = 151675

# Real Qwen image-processor settings (Qwen2-VL and Qwen2.5-VL share them).
QWEN2_PATCH_SIZE = 14
QWEN3_PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
QWEN2_MIN_PIXELS = 3136
QWEN2_MAX_PIXELS = 12845056
QWEN3_MIN_PIXELS = 65536
QWEN3_MAX_PIXELS = 16777216
QWEN3_VIDEO_MIN_PIXELS = 4096
QWEN3_VIDEO_MAX_PIXELS = 25165824
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Real InternVL3 (GotOcr2 image processor) settings.
INTERNVL_TILE_SIZE = 448
INTERNVL_PATCH_SIZE = 14
INTERNVL_MAX_TILES = 12
INTERNVL_IMAGE_SEQ_LENGTH = 256  # (448 / 14) ** 2 * 0.5 ** 2
INTERNVL_DOWNSAMPLE_RATIO = 0.5
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Special tokens at their real ids. (token, id, special); special=False tokens are
# "added" but not stripped by skip_special_tokens, as in the real tokenizers.
FIRST_SPECIAL_ID = 151643
QWEN2_VL_SPECIAL_TOKENS: Tuple[Tuple[str, int, bool], ...] = (
    ('<|endoftext|>', 151643, True),
    ('<|im_start|>', 151644, True),
    ('<|im_end|>', 151645, True),
    ('<|object_ref_start|>', 151646, True),
    ('<|object_ref_end|>', 151647, True),
    ('<|box_start|>', 151648, True),
    ('<|box_end|>', 151649, True),
    ('<|quad_start|>', 151650, True),
    ('<|quad_end|>', 151651, True),
    ('<|vision_start|>', 151652, True),
    ('<|vision_end|>', 151653, True),
    ('<|vision_pad|>', 151654, True),
    ('<|image_pad|>', 151655, True),
    ('<|video_pad|>', 151656, True),
)
QWEN2_5_SPECIAL_TOKENS = QWEN2_VL_SPECIAL_TOKENS + (
    ('<tool_call>', 151657, False),
    ('</tool_call>', 151658, False),
    ('<|fim_prefix|>', 151659, False),
    ('<|fim_middle|>', 151660, False),
    ('<|fim_suffix|>', 151661, False),
    ('<|fim_pad|>', 151662, False),
    ('<|repo_name|>', 151663, False),
    ('<|file_sep|>', 151664, False),
)
QWEN3_VL_SPECIAL_TOKENS = QWEN2_5_SPECIAL_TOKENS + (
    ('<tool_response>', 151665, False),
    ('</tool_response>', 151666, False),
    ('<think>', 151667, False),
    ('</think>', 151668, False),
)
INTERNVL_SPECIAL_TOKENS = QWEN2_5_SPECIAL_TOKENS + (
    ('<img>', 151665, True),
    ('</img>', 151666, True),
    ('<IMG_CONTEXT>', 151667, True),
    ('<quad>', 151668, True),
    ('</quad>', 151669, True),
    ('<ref>', 151670, True),
    ('</ref>', 151671, True),
    ('<box>', 151672, True),
    ('</box>', 151673, True),
    ('<video>', 151674, True),
)
# Named tokens transformers' InternVLProcessor reads from the tokenizer. Its processor
# expands `<video>` into per-frame `<img>...</img>` runs, so the id never reaches the model.
INTERNVL_NAMED_TOKENS = {
    'start_image_token': '<img>',
    'end_image_token': '</img>',
    'context_image_token': '<IMG_CONTEXT>',
    'video_token': '<video>',
}

# Words given whole-word BPE merges, so ordinary prompts tokenise to a handful of ids.
COMMON_WORDS = (
    'the', 'a', 'an', 'is', 'are', 'of', 'in', 'on', 'to', 'and', 'where', 'what', 'which',
    'box', 'boxes', 'image', 'picture', 'object', 'here', 'there', 'left', 'right', 'top',
    'bottom', 'point', 'click', 'find', 'answer', 'user', 'assistant', 'system', 'you',
    'helpful', 'describe', 'red', 'blue', 'green', 'cat', 'dog', 'car', 'person',
)

QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Qwen3-VL's template has no default system prompt.
QWEN3_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}", '')
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif content['type'] == 'video' %}<video>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@dataclass(frozen=True)
class _FamilySpec:
    special_tokens: Tuple[Tuple[str, int, bool], ...]
    vocab_size: int
    chat_template: str


_SPECS: Dict[str, _FamilySpec] = {
    'qwen2_vl': _FamilySpec(QWEN2_VL_SPECIAL_TOKENS, QWEN_VOCAB_SIZE, QWEN_CHAT_TEMPLATE),
    'qwen2_5_vl': _FamilySpec(QWEN2_5_SPECIAL_TOKENS, QWEN_VOCAB_SIZE, QWEN_CHAT_TEMPLATE),
    'qwen3_vl': _FamilySpec(QWEN3_VL_SPECIAL_TOKENS, QWEN_VOCAB_SIZE, QWEN3_CHAT_TEMPLATE),
    'internvl_hf': _FamilySpec(
        INTERNVL_SPECIAL_TOKENS, INTERNVL_VOCAB_SIZE, INTERNVL_CHAT_TEMPLATE),
}


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f'`family` should be one of {", ".join(FAMILIES)}, got {family!r}.')


def special_token_ids(family: str) -> Dict[str, int]:
    """The special tokens a tiny ``family`` checkpoint holds, mapped to their (real) ids."""
    _check_family(family)
    return {token: token_id for token, token_id, _ in _SPECS[family].special_tokens}


# ---------------------------------------------------------------------------- tokenizer
def _byte_level_vocab_and_merges() -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """A byte-level BPE vocabulary: 256 byte symbols, then whole-word merges of COMMON_WORDS."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    vocab: Dict[str, int] = {symbol: i for i, symbol in enumerate(alphabet)}
    merges: List[Tuple[str, str]] = []
    for word in COMMON_WORDS:
        for spelled in (word, '\u0120' + word):  # U+0120 'Ġ' is the byte-level space
            left = spelled[0]
            for char in spelled[1:]:
                merged = left + char
                if merged not in vocab:
                    merges.append((left, char))
                    vocab[merged] = len(vocab)
                left = merged
    return vocab, merges


def build_tokenizer(family: str):
    """A ``Qwen2Tokenizer`` whose special tokens sit at the family's real ids."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    _check_family(family)
    spec = _SPECS[family]
    vocab, merges = _byte_level_vocab_and_merges()
    # Filler tokens no merge can produce: they only move the special tokens to their ids.
    for filler_id in range(len(vocab), FIRST_SPECIAL_ID):
        vocab[f'<|tiny_filler_{filler_id}|>'] = filler_id
    for token, token_id, _ in spec.special_tokens:
        vocab[token] = token_id
    extra: Dict[str, object] = {}
    if family == 'internvl_hf':
        extra['extra_special_tokens'] = dict(INTERNVL_NAMED_TOKENS)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token='<|im_end|>',
        pad_token='<|endoftext|>',
        model_max_length=32768,
        errors='replace',
        **extra)
    # Already in the vocabulary, so they keep their ids; this only marks them unsplittable.
    tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)
                          for token, _, special in spec.special_tokens])
    tokenizer.chat_template = spec.chat_template
    return tokenizer


# ----------------------------------------------------------------------- configs
def _qwen_text_config(family: str, **extra) -> dict:
    return dict(
        vocab_size=_SPECS[family].vocab_size,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=2 * HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        **extra)


def _qwen_vision_config(**extra) -> dict:
    return dict(
        depth=2,
        hidden_size=HIDDEN_SIZE,
        num_heads=NUM_HEADS,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        **extra)


def _config(family: str):
    """The model config for ``family``: real token ids and geometry, toy widths."""
    import transformers as tf

    qwen_ids = dict(image_token_id=151655, video_token_id=151656,
                    vision_start_token_id=151652, vision_end_token_id=151653)
    mrope = {'rope_type': 'default', 'mrope_section': MROPE_SECTION, 'rope_theta': 1e6}
    if family == 'qwen2_vl':
        return tf.Qwen2VLConfig(
            text_config=_qwen_text_config(family, rope_parameters=mrope),
            vision_config=_qwen_vision_config(
                embed_dim=HIDDEN_SIZE, mlp_ratio=2, patch_size=QWEN2_PATCH_SIZE),
            tie_word_embeddings=True,
            **qwen_ids)
    if family == 'qwen2_5_vl':
        return tf.Qwen2_5_VLConfig(
            text_config=_qwen_text_config(family, rope_parameters=mrope),
            vision_config=_qwen_vision_config(
                intermediate_size=2 * HIDDEN_SIZE, out_hidden_size=HIDDEN_SIZE,
                patch_size=QWEN2_PATCH_SIZE, window_size=112, fullatt_block_indexes=[1],
                tokens_per_second=2),
            tie_word_embeddings=True,
            **qwen_ids)
    if family == 'qwen3_vl':
        return tf.Qwen3VLConfig(
            text_config=_qwen_text_config(
                family,
                head_dim=HIDDEN_SIZE // NUM_HEADS,
                rope_parameters={**mrope, 'mrope_interleaved': True, 'rope_theta': 5e6}),
            vision_config=_qwen_vision_config(
                intermediate_size=2 * HIDDEN_SIZE, out_hidden_size=HIDDEN_SIZE,
                patch_size=QWEN3_PATCH_SIZE, num_position_embeddings=2304,
                deepstack_visual_indexes=[1]),
            tie_word_embeddings=True,
            **qwen_ids)
    if family == 'internvl_hf':
        return tf.InternVLConfig(
            text_config=_qwen_text_config(family, model_type='qwen2'),
            vision_config=dict(
                hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=1,
                num_attention_heads=NUM_HEADS, image_size=[INTERNVL_TILE_SIZE] * 2,
                patch_size=[INTERNVL_PATCH_SIZE] * 2, use_mean_pooling=True),
            image_token_id=special_token_ids(family)['<IMG_CONTEXT>'],
            image_seq_length=INTERNVL_IMAGE_SEQ_LENGTH,
            downsample_ratio=INTERNVL_DOWNSAMPLE_RATIO,
            vision_feature_layer=-1,
            vision_feature_select_strategy='default',
            tie_word_embeddings=True)
    raise AssertionError(family)  # unreachable: _check_family ran first


MODEL_CLASS_NAMES: Dict[str, str] = {
    'qwen2_vl': 'Qwen2VLForConditionalGeneration',
    'qwen2_5_vl': 'Qwen2_5_VLForConditionalGeneration',
    'qwen3_vl': 'Qwen3VLForConditionalGeneration',
    'internvl_hf': 'InternVLForConditionalGeneration',
}


def _processor(family: str, tokenizer):
    """The family's processor with the real image and video processor settings."""
    import transformers as tf

    parts = dict(tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    if family in ('qwen2_vl', 'qwen2_5_vl'):
        settings = dict(min_pixels=QWEN2_MIN_PIXELS, max_pixels=QWEN2_MAX_PIXELS,
                        patch_size=QWEN2_PATCH_SIZE, merge_size=MERGE_SIZE,
                        temporal_patch_size=TEMPORAL_PATCH_SIZE,
                        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
        processor_cls = tf.Qwen2VLProcessor if family == 'qwen2_vl' else tf.Qwen2_5_VLProcessor
        return processor_cls(image_processor=tf.Qwen2VLImageProcessor(**settings),
                             video_processor=tf.Qwen2VLVideoProcessor(**settings), **parts)
    if family == 'qwen3_vl':
        settings = dict(patch_size=QWEN3_PATCH_SIZE, merge_size=MERGE_SIZE,
                        temporal_patch_size=TEMPORAL_PATCH_SIZE,
                        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        image_size = {'shortest_edge': QWEN3_MIN_PIXELS, 'longest_edge': QWEN3_MAX_PIXELS}
        video_size = {'shortest_edge': QWEN3_VIDEO_MIN_PIXELS,
                      'longest_edge': QWEN3_VIDEO_MAX_PIXELS}
        return tf.Qwen3VLProcessor(
            image_processor=tf.Qwen2VLImageProcessor(size=image_size, **settings),
            video_processor=tf.Qwen3VLVideoProcessor(
                size=video_size, fps=2, min_frames=4, max_frames=768, **settings),
            **parts)
    if family == 'internvl_hf':
        settings = dict(size={'height': INTERNVL_TILE_SIZE, 'width': INTERNVL_TILE_SIZE},
                        image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_rescale=True,
                        rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True)
        # crop_to_patches is off in the saved config, as in InternVL3-1B-hf: the processor
        # (and ms-swift's template) turn it on per call.
        image_processor = tf.GotOcr2ImageProcessor(
            crop_to_patches=False, min_patches=1, max_patches=INTERNVL_MAX_TILES, **settings)
        return tf.InternVLProcessor(
            image_processor=image_processor,
            video_processor=tf.InternVLVideoProcessor(**settings),
            image_seq_length=INTERNVL_IMAGE_SEQ_LENGTH,
            **parts)
    raise AssertionError(family)


# ------------------------------------------------------------------------ building
def _read_marker(out_dir: str) -> Optional[dict]:
    path = os.path.join(out_dir, MARKER_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError:  # a damaged marker marks nothing
        return None


def is_complete(family: str, out_dir: str, seed: int = DEFAULT_SEED) -> bool:
    """Whether ``out_dir`` holds a complete tiny ``family`` checkpoint built with ``seed``."""
    marker = _read_marker(out_dir)
    if marker != {'family': family, 'seed': seed, 'builder_version': BUILDER_VERSION}:
        return False
    return all(os.path.isfile(os.path.join(out_dir, name)) for name in REQUIRED_FILES)


def _write_checkpoint(family: str, out_dir: str, seed: int) -> None:
    import torch
    import transformers

    tokenizer = build_tokenizer(family)
    config = _config(family)
    config.dtype = torch.float32  # tiny and CPU-bound: no bf16 surprises
    # fork_rng: seed the weights without changing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, MODEL_CLASS_NAMES[family])(config).eval()
    # Tied embeddings: the LM head must not be a second 19 MB copy.
    embeddings = model.get_input_embeddings().weight
    if model.get_output_embeddings().weight.data_ptr() != embeddings.data_ptr():
        raise RuntimeError(f'The tiny {family} model did not tie its embeddings: '
                           'the checkpoint would hold the 151k-row table twice.')
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.save_pretrained(out_dir)

    processor = _processor(family, tokenizer)
    processor.save_pretrained(out_dir)
    # processor.save_pretrained writes only processor_config.json; loaders that go
    # straight to AutoImageProcessor / AutoVideoProcessor need their own files.
    processor.image_processor.save_pretrained(out_dir)
    processor.video_processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, MARKER_FILE), 'w', encoding='utf-8') as f:
        json.dump({'family': family, 'seed': seed, 'builder_version': BUILDER_VERSION}, f, indent=2)


def make_tiny_model(family: str, out_dir: str, *, seed: int = DEFAULT_SEED) -> str:
    """Write a tiny randomly initialised ``family`` checkpoint to ``out_dir``; return its path.

    Deterministic (same ``seed``, same bytes) and idempotent: if ``out_dir`` already holds a
    complete checkpoint of that family and seed, it is returned untouched. The checkpoint is
    built in a sibling temporary directory and moved into place, so ``out_dir`` never holds
    half a checkpoint. ``out_dir`` must not exist or be empty otherwise.

    Args:
        family: one of ``FAMILIES``.
        out_dir: where the checkpoint goes.
        seed: seed for the random weights.

    Returns:
        The absolute path of the checkpoint directory.

    Example:
        >>> make_tiny_model('qwen2_5_vl', '/tmp/tiny-qwen2_5_vl')  # doctest: +SKIP
        '/tmp/tiny-qwen2_5_vl'

        then ``swift sft --model /tmp/tiny-qwen2_5_vl --model_type qwen2_5_vl
        --template qwen2_5_vl ...`` (see the module docstring for the other families).
    """
    _check_family(family)
    out_dir = os.path.abspath(out_dir)
    if is_complete(family, out_dir, seed):
        logger.info('Reusing tiny %s checkpoint in %s', family, out_dir)
        return out_dir
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        marker = _read_marker(out_dir) if os.path.isdir(out_dir) else None
        found = f'a tiny checkpoint {marker}' if marker else 'other files'
        raise FileExistsError(f'`out_dir` should be missing or empty, or hold a tiny {family!r} '
                              f'checkpoint with seed {seed}; {out_dir!r} holds {found}.')

    start = time.perf_counter()
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.partial-', dir=parent)
    try:
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it private; a model directory is not
        _write_checkpoint(family, tmp_dir, seed)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty, checked above
        try:
            os.rename(tmp_dir, out_dir)
        except OSError:
            # Someone else finished the same build first: theirs is as good as ours.
            if not is_complete(family, out_dir, seed):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info('Built tiny %s checkpoint in %s (%.1f s, %.1f MB)', family, out_dir,
                time.perf_counter() - start, directory_size(out_dir) / 1e6)
    return out_dir


def directory_size(path: str) -> int:
    """Total size in bytes of the regular files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


# ----------------------------------------------------------------------------- CLI
def build_parser(prog: str = 'swift-ext make-tiny-model') -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Write a tiny randomly initialised vision-language checkpoint '
        'that ms-swift loads offline.')
    parser.add_argument('--family', required=True, choices=FAMILIES, help='model family')
    parser.add_argument('--out', required=True, help='output directory (missing or empty)')
    parser.add_argument('--seed', type=int, default=DEFAULT_SEED,
                        help='seed for the random weights')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``swift-ext make-tiny-model --family FAMILY --out DIR [--seed N]``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        path = make_tiny_model(args.family, args.out, seed=args.seed)
    except FileExistsError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(path)
    print(f'use: --model {path} --model_type {SWIFT_MODEL_TYPES[args.family]} '
          f'--template {SWIFT_TEMPLATES[args.family]}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
