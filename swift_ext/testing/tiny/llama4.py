"""Tiny Llama 4 (``Llama4ForConditionalGeneration``) checkpoint for ``llama4``.

Kept real, because geometry depends on it (meta-llama/Llama-4-Scout-17B-16E-Instruct):

- the image processor: tiles of 336 x 336, ``max_patches`` 16, ``resize_to_max_canvas`` False,
  bilinear resize, mean / std 0.5;
- the processor's ``patch_size`` 14 and ``pixel_shuffle_ratio`` 0.5 (144 ``<|patch|>`` tokens a tile),
  and the vision tower's ``image_size`` 336 / ``patch_size`` 14 / ``pixel_shuffle_ratio`` 0.5;
- the Llama 4 special tokens at their ids: ``<|begin_of_text|>`` 200000, ``<|end_of_text|>`` 200001,
  ``<|header_start|>`` 200005, ``<|header_end|>`` 200006, ``<|eom|>`` 200007, ``<|eot|>`` 200008,
  ``<|finetune_right_pad|>`` 200018, ``<|image_start|>`` 200080, ``<|image_end|>`` 200081,
  ``<|tile_x_separator|>`` 200084, ``<|tile_y_separator|>`` 200085, ``<|image|>`` 200090, ``<|patch|>``
  200092 (the model's ``image_token_index``); vocabulary 202048.

Everything else is toy-sized: two text layers (one mixture-of-experts layer with two experts), a
one-layer vision encoder. The embeddings are tied (about 26 MB). The tokenizer is a byte-level BPE
(``Qwen2Tokenizer`` class) whose ``'\\n'`` is one token, as ``Llama4Template`` needs to split the
processor's output on it. Run with ``--model_type llama4``.
"""
from __future__ import annotations

from .common import HIDDEN_SIZE, NUM_HEADS, save_model, save_processor, tokenizer_around

PARENTS = ('llama4',)

VOCAB_SIZE = 202048
TILE_SIZE = 336
PATCH_SIZE = 14
MAX_PATCHES = 16
PIXEL_SHUFFLE_RATIO = 0.5
PATCH_TOKEN_ID = 200092

SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<|begin_of_text|>', 200000, True), ('<|end_of_text|>', 200001, True), ('<|header_start|>', 200005, True),
    ('<|header_end|>', 200006, True), ('<|eom|>', 200007, True), ('<|eot|>', 200008, True),
    ('<|finetune_right_pad|>', 200018, True), ('<|image_start|>', 200080, True), ('<|image_end|>', 200081, True),
    ('<|tile_x_separator|>', 200084, True), ('<|tile_y_separator|>', 200085, True), ('<|image|>', 200090, True),
    ('<|patch|>', PATCH_TOKEN_ID, True))

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|header_start|>{{ message['role'] }}<|header_end|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<|image|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|header_start|>assistant<|header_end|>\n\n{% endif %}")


def tokenizer(parent: str = 'llama4'):
    # Fillers pad the vocabulary up to the last special id; the model's table has VOCAB_SIZE rows.
    return tokenizer_around(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, unk_token=None,
                            bos_token='<|begin_of_text|>', eos_token='<|eot|>', pad_token='<|finetune_right_pad|>')


def config(parent: str = 'llama4'):
    import transformers as tf

    # The pixel shuffle turns each patch's hidden_size features into 4x as many: intermediate_size must be
    # 4 * hidden_size, and the adapter's dims equal vision_output_dim (the projector's input).
    vision = dict(hidden_size=HIDDEN_SIZE, num_hidden_layers=1, num_attention_heads=NUM_HEADS,
                  intermediate_size=4 * HIDDEN_SIZE, vision_output_dim=HIDDEN_SIZE, projector_input_dim=HIDDEN_SIZE,
                  projector_output_dim=HIDDEN_SIZE, image_size=TILE_SIZE, patch_size=PATCH_SIZE,
                  pixel_shuffle_ratio=PIXEL_SHUFFLE_RATIO)
    text = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                intermediate_size_mlp=2 * HIDDEN_SIZE, num_hidden_layers=2, num_attention_heads=NUM_HEADS,
                num_key_value_heads=NUM_HEADS, head_dim=HIDDEN_SIZE // NUM_HEADS, num_local_experts=2,
                interleave_moe_layer_step=2, max_position_embeddings=32768, bos_token_id=200000,
                eos_token_id=[200001, 200007, 200008], pad_token_id=200018, tie_word_embeddings=True)
    return tf.Llama4Config(vision_config=vision, text_config=text, image_token_index=PATCH_TOKEN_ID,
                           tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    image_processor = tf.Llama4ImageProcessor(size={'height': TILE_SIZE, 'width': TILE_SIZE}, max_patches=MAX_PATCHES,
                                              resize_to_max_canvas=False, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return tf.Llama4Processor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                              pixel_shuffle_ratio=PIXEL_SHUFFLE_RATIO, chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tok = tokenizer(parent)
    save_model('Llama4ForConditionalGeneration', config(parent), out_dir, seed, eos_token_id=[200001, 200007, 200008],
               pad_token_id=200018)
    save_processor(processor(parent, tok), tok, out_dir)
