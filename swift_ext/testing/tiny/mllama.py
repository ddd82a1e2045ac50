"""Tiny Llama 3.2 Vision (``MllamaForConditionalGeneration``) checkpoint for ``llama3_2_vision``.

Kept real, because geometry depends on it (meta-llama/Llama-3.2-11B-Vision-Instruct):

- the image processor: tiles of 560 x 560, ``max_image_tiles`` 4, bilinear resize, CLIP mean / std;
- the vision tower's ``image_size`` 560 and ``patch_size`` 14 (1600 patches + 1 class token a tile),
  ``max_num_tiles`` 4 and the eight supported aspect ratios;
- the Llama 3 special tokens: ``<|begin_of_text|>`` 128000, ``<|end_of_text|>`` 128001,
  ``<|finetune_right_pad_id|>`` 128004, ``<|start_header_id|>`` 128006, ``<|end_header_id|>`` 128007,
  ``<|eom_id|>`` 128008, ``<|eot_id|>`` 128009, ``<|python_tag|>`` 128010, and ``<|image|>`` 128256
  (the processor and the model's ``image_token_index``), vocabulary 128256 (+ 8 embedding rows).

Everything else is toy-sized: two text layers (the second a cross-attention layer), a two-layer vision
encoder with one global layer. The embeddings are not tied (Mllama's embedding table has 8 more rows than
its LM head), so the checkpoint holds both (about 33 MB). The tokenizer is a byte-level BPE
(``Qwen2Tokenizer`` class), not Llama 3's tiktoken BPE: only the ids matter to the template.
Run with ``--model_type llama3_2_vision``.
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

PARENTS = ('llama3_2_vision',)

VOCAB_SIZE = 128256
IMAGE_TOKEN_ID = 128256
TILE_SIZE = 560
PATCH_SIZE = 14
MAX_IMAGE_TILES = 4

SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<|begin_of_text|>', 128000, True), ('<|end_of_text|>', 128001, True),
    ('<|finetune_right_pad_id|>', 128004, True), ('<|start_header_id|>', 128006, True),
    ('<|end_header_id|>', 128007, True), ('<|eom_id|>', 128008, True), ('<|eot_id|>', 128009, True),
    ('<|python_tag|>', 128010, True), ('<|image|>', IMAGE_TOKEN_ID, True))

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<|image|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def tokenizer(parent: str = 'llama3_2_vision'):
    return tokenizer_around(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, unk_token=None,
                            bos_token='<|begin_of_text|>', eos_token='<|eot_id|>',
                            pad_token='<|finetune_right_pad_id|>')


def config(parent: str = 'llama3_2_vision'):
    import transformers as tf

    vision = dict(hidden_size=HIDDEN_SIZE, attention_heads=NUM_HEADS, num_hidden_layers=2, num_global_layers=1,
                  intermediate_size=2 * HIDDEN_SIZE, intermediate_layers_indices=[0], vision_output_dim=2 * HIDDEN_SIZE,
                  image_size=TILE_SIZE, patch_size=PATCH_SIZE, max_num_tiles=MAX_IMAGE_TILES)
    text = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, num_hidden_layers=2, num_attention_heads=NUM_HEADS,
                num_key_value_heads=NUM_HEADS, intermediate_size=2 * HIDDEN_SIZE, cross_attention_layers=[1],
                max_position_embeddings=32768, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                pad_token_id=128004, tie_word_embeddings=False)
    return tf.MllamaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN_ID)


def processor(parent: str, tok):
    import transformers as tf

    image_processor = tf.MllamaImageProcessor(size={'height': TILE_SIZE, 'width': TILE_SIZE},
                                              max_image_tiles=MAX_IMAGE_TILES, image_mean=OPENAI_CLIP_MEAN,
                                              image_std=OPENAI_CLIP_STD, resample=2)
    return tf.MllamaProcessor(image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tok = tokenizer(parent)
    save_model('MllamaForConditionalGeneration', config(parent), out_dir, seed, eos_token_id=[128001, 128008, 128009],
               pad_token_id=128004, check_tied=False)
    save_processor(processor(parent, tok), tok, out_dir)
