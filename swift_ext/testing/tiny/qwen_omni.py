"""Tiny Qwen2.5-Omni and Qwen3-Omni checkpoints: a toy thinker, audio output off.

ms-swift trains and samples only the thinker (its Omni loaders call ``use_submodel_func(model,
'thinker')``), so the talker and token2wav are left out: ``enable_audio_output=False`` builds the
model without them, and the checkpoint loads through ms-swift's own ``Qwen2_5OmniLoader`` /
``Qwen3OmniLoader`` (``--model_type qwen2_5_omni`` / ``qwen3_omni_moe``; Qwen3-Omni exists only as
a mixture-of-experts model in transformers, so the tiny one has 4 experts, 2 per token).

Kept real, because geometry and ms-swift depend on it:

- the special tokens at the public tokenizers' ids: ``<|IMAGE|>`` (2.5) and ``<|image_pad|>`` (3)
  are both 151655, the vision brackets 151652 / 151653, Qwen2.5-Omni's ``<|AUDIO|>`` 151646 and
  Qwen3-Omni's ``<|audio_pad|>`` 151675 (ms-swift reads the latter back from the tokenizer);
- the image processors: patch 14 (2.5) / 16 (3), merge 2, temporal patch 2; Qwen2.5-Omni-7B's
  ``min_pixels`` 3136 / ``max_pixels`` 12845056, Qwen3-Omni's ``shortest_edge`` 65536 /
  ``longest_edge`` 16777216 (kept for users of the processor: ms-swift resizes with
  ``qwen_omni_utils.fetch_image`` and then calls the image processor with ``do_resize=False``);
- a Whisper feature extractor with 128 mel bins, which both Omni processors require.

Everything else is toy-sized: hidden size 16, one layer per tower, so the tied 151,936-row
embedding is most of the ~16 MB.
"""
from __future__ import annotations

import os

from . import common
from .qwen import FIRST_SPECIAL_ID, QWEN3_CHAT_TEMPLATE, QWEN3_VL_SPECIAL_TOKENS, QWEN_CHAT_TEMPLATE, QWEN_VOCAB_SIZE

PARENTS = ('qwen2_5_omni', 'qwen3_omni')

HIDDEN_SIZE = 16
PATCH_SIZE = {'qwen2_5_omni': 14, 'qwen3_omni': 16}
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
NUM_MEL_BINS = 128
QWEN2_5_OMNI_MIN_PIXELS = 3136
QWEN2_5_OMNI_MAX_PIXELS = 12845056
QWEN3_OMNI_MIN_PIXELS = 65536
QWEN3_OMNI_MAX_PIXELS = 16777216
EOS_TOKEN_ID = 151645  # <|im_end|>
PAD_TOKEN_ID = 151643  # <|endoftext|>

# Qwen2.5-Omni renames Qwen2-VL's tokens from 151646 on: audio where the object refs were.
QWEN2_5_OMNI_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = tuple(
    (token, FIRST_SPECIAL_ID + i, True) for i, token in enumerate((
        '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|AUDIO|>', '<|audio_bos|>', '<|audio_eos|>',
        '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_bos|>', '<|vision_eos|>', '<|vision_pad|>',
        '<|IMAGE|>', '<|VIDEO|>')))
# Qwen3-Omni keeps Qwen3-VL's tokens and appends the audio / speech ones.
QWEN3_OMNI_SPECIAL_TOKENS = QWEN3_VL_SPECIAL_TOKENS + tuple(
    (token, 151669 + i, True) for i, token in enumerate((
        '<|audio_start|>', '<|audio_end|>', '<tts_pad>', '<tts_text_bos>', '<tts_text_eod>', '<tts_text_bos_single>',
        '<|audio_pad|>')))
# What the Omni processors look up by name on the tokenizer.
NAMED_TOKENS = {
    'qwen2_5_omni': dict(image_token='<|IMAGE|>', audio_token='<|AUDIO|>', video_token='<|VIDEO|>',
                         vision_bos_token='<|vision_bos|>', vision_eos_token='<|vision_eos|>',
                         audio_bos_token='<|audio_bos|>', audio_eos_token='<|audio_eos|>'),
    'qwen3_omni': dict(image_token='<|image_pad|>', audio_token='<|audio_pad|>', video_token='<|video_pad|>',
                       vision_bos_token='<|vision_start|>', vision_eos_token='<|vision_end|>',
                       audio_bos_token='<|audio_start|>', audio_eos_token='<|audio_end|>'),
}
# ms-swift builds prompts itself; the chat template is only for users of the processor.
CHAT_TEMPLATES = {
    'qwen2_5_omni': QWEN_CHAT_TEMPLATE.replace('<|vision_start|><|image_pad|><|vision_end|>',
                                               '<|vision_bos|><|IMAGE|><|vision_eos|>')
                                      .replace('<|vision_start|><|video_pad|><|vision_end|>',
                                               '<|vision_bos|><|VIDEO|><|vision_eos|>'),
    'qwen3_omni': QWEN3_CHAT_TEMPLATE,
}
MODEL_CLASS_NAMES = {'qwen2_5_omni': 'Qwen2_5OmniForConditionalGeneration',
                     'qwen3_omni': 'Qwen3OmniMoeForConditionalGeneration'}


def _text(**extra) -> dict:
    return dict(vocab_size=QWEN_VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
                eos_token_id=EOS_TOKEN_ID, pad_token_id=PAD_TOKEN_ID, **extra)


def _audio(**extra) -> dict:
    return dict(d_model=HIDDEN_SIZE, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=2 * HIDDEN_SIZE,
                output_dim=HIDDEN_SIZE, num_mel_bins=NUM_MEL_BINS, **extra)


def _vision(parent: str, **extra) -> dict:
    return dict(depth=1, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_heads=2,
                out_hidden_size=HIDDEN_SIZE, spatial_merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                patch_size=PATCH_SIZE[parent], **extra)


def config(parent: str):
    """The Omni config: a toy thinker with the real token ids, patch and merge sizes; no talker."""
    import transformers as tf

    ids = dict(vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=True)
    if parent == 'qwen2_5_omni':
        # head_dim 8: mrope_section sums to 4
        rope = {'rope_type': 'default', 'mrope_section': [1, 1, 2], 'rope_theta': 1e6}
        thinker = dict(audio_config=_audio(), text_config=_text(rope_parameters=rope),
                       vision_config=_vision(parent, window_size=112, fullatt_block_indexes=[0]), **ids)
        cfg = tf.Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)
    else:
        rope = {'rope_type': 'default', 'mrope_section': [2, 1, 1], 'mrope_interleaved': True, 'rope_theta': 1e6}
        text = _text(head_dim=8, moe_intermediate_size=HIDDEN_SIZE, num_experts=4, num_experts_per_tok=2,
                     rope_parameters=rope)
        thinker = dict(audio_config=_audio(downsample_hidden_size=8), text_config=text,
                       vision_config=_vision(parent, deepstack_visual_indexes=[0]),
                       audio_token_id=151675, audio_start_token_id=151669, audio_end_token_id=151670, **ids)
        cfg = tf.Qwen3OmniMoeConfig(thinker_config=thinker, enable_audio_output=False)
    cfg.architectures = [MODEL_CLASS_NAMES[parent]]  # what ms-swift matches a directory by
    return cfg


def tokenizer(parent: str):
    special = QWEN2_5_OMNI_SPECIAL_TOKENS if parent == 'qwen2_5_omni' else QWEN3_OMNI_SPECIAL_TOKENS
    return common.build_tokenizer(special, chat_template=CHAT_TEMPLATES[parent], first_special_id=FIRST_SPECIAL_ID,
                                  eos_token='<|im_end|>', pad_token='<|endoftext|>',
                                  extra={'extra_special_tokens': NAMED_TOKENS[parent]})


def processor(parent: str, tok):
    """The Omni processor with the public checkpoint's image settings and a 128-bin Whisper extractor."""
    import transformers as tf

    settings = dict(patch_size=PATCH_SIZE[parent], merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE)
    if parent == 'qwen2_5_omni':
        settings.update(min_pixels=QWEN2_5_OMNI_MIN_PIXELS, max_pixels=QWEN2_5_OMNI_MAX_PIXELS)
        processor_cls = tf.Qwen2_5OmniProcessor
    else:
        settings.update(size={'shortest_edge': QWEN3_OMNI_MIN_PIXELS, 'longest_edge': QWEN3_OMNI_MAX_PIXELS})
        processor_cls = tf.Qwen3OmniMoeProcessor
    return processor_cls(image_processor=tf.Qwen2VLImageProcessor(**settings),
                         video_processor=tf.Qwen2VLVideoProcessor(**settings),
                         feature_extractor=tf.WhisperFeatureExtractor(feature_size=NUM_MEL_BINS), tokenizer=tok,
                         chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    import torch

    tok = tokenizer(parent)
    # check_tied=False: the Omni wrapper has no output embeddings of its own; the thinker ties its pair.
    common.save_model(MODEL_CLASS_NAMES[parent], config(parent), out_dir, seed, eos_token_id=EOS_TOKEN_ID,
                      pad_token_id=PAD_TOKEN_ID, check_tied=False)
    if parent == 'qwen2_5_omni':  # from_pretrained loads the talker's speakers even with audio output off
        torch.save({}, os.path.join(out_dir, 'spk_dict.pt'))
    # processor_config.json holds the feature extractor too; preprocessor_config.json stays the image processor's.
    common.save_processor(processor(parent, tok), tok, out_dir)
