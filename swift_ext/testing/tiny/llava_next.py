"""Tiny LLaVA-NeXT (``LlavaNextForConditionalGeneration``) and LLaVA-OneVision
(``LlavaOnevisionForConditionalGeneration``) checkpoints.

Kept real, because geometry depends on it:

- ``llava1_6_mistral_hf`` (llava-hf/llava-v1.6-mistral-7b-hf): Mistral's ``<unk>`` 0, ``<s>`` 1,
  ``</s>`` 2, ``<image>`` 32000 (the template looks it up from ``processor.image_token``), vocabulary
  32064; a CLIP tower with 336-pixel views, patch 14, ``vision_feature_layer`` -2, strategy 'default',
  the processor's ``num_additional_image_tokens`` 1; pinpoints (h, w) 336x672, 672x336, 672x672,
  1008x336, 336x1008; ``size={'shortest_edge': 336}``, ``crop_size`` 336, CLIP mean / std.
- ``llava_onevision_hf`` (llava-hf/llava-onevision-qwen2-0.5b-ov-hf): Qwen2's ``<|endoftext|>``
  151643, ``<|im_start|>`` 151644, ``<|im_end|>`` 151645, then ``<image>`` 151646 (hard-coded in
  ``LlavaOneVisionHfTemplate._encode``) and ``<video>`` 151647, vocabulary 152000; a SigLIP tower
  with 384-pixel views, patch 14 (729 tokens), ``vision_feature_layer`` -1, strategy 'full',
  ``anyres_max_9``; 36 pinpoints 384..2304 in both axes, ``size`` 384x384, mean / std 0.5.

The tokenizer is a byte-level BPE (``Qwen2Tokenizer`` class) for both: only the ids matter to the
templates. Run with ``--model_type llava1_6_mistral_hf`` / ``llava_onevision_hf``.
"""
from __future__ import annotations

from .common import (
    HIDDEN_SIZE,
    NUM_HEADS,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    save_model,
    save_processor,
    tokenizer_around,
)

PARENTS = ('llava1_6_mistral_hf', 'llava_onevision_hf')

NEXT_VOCAB_SIZE = 32064
NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
NEXT_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<unk>', 0, True), ('<s>', 1, True), ('</s>', 2, True), ('<image>', 32000, True), ('<pad>', 32001, True))

OV_VOCAB_SIZE = 152000
OV_PINPOINTS = [[384 * rows, 384 * cols] for rows in range(1, 7) for cols in range(1, 7)]
OV_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<|endoftext|>', 151643, True), ('<|im_start|>', 151644, True), ('<|im_end|>', 151645, True),
    ('<image>', 151646, True), ('<video>', 151647, True))

NEXT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST] "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} [/INST]"
    "{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
OV_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tokenizer(parent: str):
    if parent == 'llava1_6_mistral_hf':
        return tokenizer_around(NEXT_SPECIAL_TOKENS, chat_template=NEXT_CHAT_TEMPLATE, unk_token='<unk>',
                                bos_token='<s>', eos_token='</s>', pad_token='<pad>')
    return tokenizer_around(OV_SPECIAL_TOKENS, chat_template=OV_CHAT_TEMPLATE, unk_token=None, eos_token='<|im_end|>',
                            pad_token='<|endoftext|>')


def _text_config(model_type: str, vocab_size: int, **ids) -> dict:
    return dict(model_type=model_type, vocab_size=vocab_size, hidden_size=HIDDEN_SIZE,
                intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=2, num_attention_heads=NUM_HEADS,
                num_key_value_heads=NUM_HEADS, head_dim=HIDDEN_SIZE // NUM_HEADS, max_position_embeddings=32768,
                tie_word_embeddings=True, **ids)


def _vision_config(model_type: str, image_size: int) -> dict:
    # Two layers: LLaVA-NeXT reads the second-to-last hidden state (vision_feature_layer -2).
    return dict(model_type=model_type, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=2, num_attention_heads=NUM_HEADS, image_size=image_size, patch_size=14)


def config(parent: str):
    import transformers as tf

    if parent == 'llava1_6_mistral_hf':
        return tf.LlavaNextConfig(
            text_config=_text_config('mistral', NEXT_VOCAB_SIZE, bos_token_id=1, eos_token_id=2, pad_token_id=32001,
                                     sliding_window=None),
            vision_config=_vision_config('clip_vision_model', 336), image_token_index=32000,
            image_grid_pinpoints=NEXT_PINPOINTS, vision_feature_layer=-2, vision_feature_select_strategy='default',
            image_seq_length=576, tie_word_embeddings=True)
    return tf.LlavaOnevisionConfig(
        text_config=_text_config('qwen2', OV_VOCAB_SIZE, bos_token_id=151643, eos_token_id=151645,
                                 pad_token_id=151643),
        vision_config=_vision_config('siglip_vision_model', 384), image_token_index=151646,
        video_token_index=151647, image_grid_pinpoints=OV_PINPOINTS, vision_feature_layer=-1,
        vision_feature_select_strategy='full', vision_aspect_ratio='anyres_max_9', tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    if parent == 'llava1_6_mistral_hf':
        image_processor = tf.LlavaNextImageProcessor(
            size={'shortest_edge': 336}, crop_size={'height': 336, 'width': 336}, image_grid_pinpoints=NEXT_PINPOINTS,
            image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, do_center_crop=True, do_pad=True)
        return tf.LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                                     vision_feature_select_strategy='default', num_additional_image_tokens=1,
                                     chat_template=tok.chat_template)
    settings = dict(size={'height': 384, 'width': 384}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return tf.LlavaOnevisionProcessor(
        image_processor=tf.LlavaOnevisionImageProcessor(image_grid_pinpoints=OV_PINPOINTS, do_pad=True, **settings),
        video_processor=tf.LlavaOnevisionVideoProcessor(**settings), tokenizer=tok, num_image_tokens=729,
        vision_feature_select_strategy='full', vision_aspect_ratio='anyres_max_9', chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tok = tokenizer(parent)
    next_ = parent == 'llava1_6_mistral_hf'
    cls = 'LlavaNextForConditionalGeneration' if next_ else 'LlavaOnevisionForConditionalGeneration'
    save_model(cls, config(parent), out_dir, seed, eos_token_id=2 if next_ else [151645, 151643],
               pad_token_id=32001 if next_ else 151643)
    save_processor(processor(parent, tok), tok, out_dir)
