"""Tiny MiniCPM-V 4.6 / 4.7 checkpoints (transformers-native, Qwen3.5 text model).

Kept real, because geometry depends on it: the image processor of ``openbmb/MiniCPM-V-4.6``
as transformers 5.19 defines it (``MiniCPMV4_6ImageProcessor`` class defaults: 448-pixel
slices, patch 14, at most 9 slices, slice mode on, ``16x`` downsampling, image ids on,
mean/std 0.5), and the token *names* the processor and ms-swift look up
(``<|image_pad|>``, ``<|video_pad|>``, ``<image>`` ... ``</image_id>``, ``<|im_end|>``).

Not kept: the token ids. ms-swift's ``MiniCPMV4_6Template`` hard-codes none (it tokenizes
``<|image_pad|>`` and the eos token by name), and the processor reads every id from the
tokenizer, so a 32,019-id byte-level vocabulary serves (special tokens after 32,000 fillers);
a 248,320-row Qwen3.5 table would only make the checkpoint 28 MB larger.
"""
from __future__ import annotations

from .common import HIDDEN_SIZE, NUM_HEADS, build_tokenizer, save_model, save_processor

PARENTS = ('minicpmv4_6', 'minicpmv4_7')

VISION_PATCH_SIZE = 14
VISION_IMAGE_SIZE = 980  # SigLIP position table side 70; positions are interpolated (nearest)

# name on the tokenizer -> token, as the MiniCPM-V processors read them (tokenizer.<name>).
NAMED_TOKENS = {
    'image_token': '<|image_pad|>',
    'video_token': '<|video_pad|>',
    'image_start_token': '<image>',
    'image_end_token': '</image>',
    'slice_start_token': '<slice>',
    'slice_end_token': '</slice>',
    'image_id_start_token': '<image_id>',
    'image_id_end_token': '</image_id>',
}
# Filler ids before the special tokens: a random model samples its completion tokens uniformly, and
# with a few hundred ids it writes `<|image_pad|>` often enough that the training forward then
# finds more image tokens than image features (seen: "tokens: 693, features: 692").
FIRST_SPECIAL_ID = 32000
SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>', '</think>', '<|vision_start|>',
                  '<|vision_end|>', '<ref>', '</ref>', '<box>', '</box>') + tuple(NAMED_TOKENS.values())

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|image_pad|>\n"
    "{% elif content['type'] == 'video' %}<|video_pad|>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_minicpmv_tokenizer():
    """The shared byte-level BPE, filler up to FIRST_SPECIAL_ID, then the special tokens (ids not real)."""
    specials = [(token, FIRST_SPECIAL_ID + i, True) for i, token in enumerate(SPECIAL_TOKENS)]
    return build_tokenizer(specials, chat_template=CHAT_TEMPLATE, first_special_id=FIRST_SPECIAL_ID,
                           eos_token='<|im_end|>', pad_token='<|endoftext|>',
                           extra={'extra_special_tokens': dict(NAMED_TOKENS)})


def _config(parent: str, tokenizer):
    import transformers as tf

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in NAMED_TOKENS.items()}
    eos, pad = tokenizer.convert_tokens_to_ids('<|im_end|>'), tokenizer.convert_tokens_to_ids('<|endoftext|>')
    text = dict(model_type='qwen3_5_text', vocab_size=len(tokenizer), hidden_size=HIDDEN_SIZE,
                intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=2, num_attention_heads=NUM_HEADS,
                num_key_value_heads=NUM_HEADS, head_dim=HIDDEN_SIZE // NUM_HEADS,
                layer_types=['linear_attention', 'full_attention'], linear_key_head_dim=8, linear_value_head_dim=8,
                linear_num_key_heads=2, linear_num_value_heads=2, tie_word_embeddings=True,
                bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    vision = dict(hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=2,
                  num_attention_heads=NUM_HEADS, image_size=VISION_IMAGE_SIZE, patch_size=VISION_PATCH_SIZE)
    common = dict(text_config=text, vision_config=vision, insert_layer_id=0, image_token_id=ids['image_token'],
                  video_token_id=ids['video_token'], tie_word_embeddings=True)
    if parent == 'minicpmv4_6':
        return tf.MiniCPMV4_6Config(**common)
    newline = tokenizer.encode('\n', add_special_tokens=False)
    return tf.MiniCPMV4_7Config(**common, image_start_id=ids['image_start_token'],
                                image_end_id=ids['image_end_token'], slice_start_id=ids['slice_start_token'],
                                slice_end_id=ids['slice_end_token'], newline_id=newline[0])


def build_processor(parent: str, tokenizer):
    """The processor with ``openbmb/MiniCPM-V-4.6``'s image settings (the class defaults)."""
    import transformers as tf

    cls = tf.MiniCPMV4_6Processor if parent == 'minicpmv4_6' else tf.MiniCPMV4_7Processor
    return cls(image_processor=tf.MiniCPMV4_6ImageProcessor(), video_processor=tf.MiniCPMV4_6VideoProcessor(),
               tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build(parent: str, out_dir: str, seed: int) -> None:
    """Write a tiny ``parent`` checkpoint (config, weights, tokenizer, processor) into ``out_dir``."""
    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tokenizer = build_minicpmv_tokenizer()
    config = _config(parent, tokenizer)
    cls = 'MiniCPMV4_6ForConditionalGeneration' if parent == 'minicpmv4_6' else 'MiniCPMV4_7ForConditionalGeneration'
    save_model(cls, config, out_dir, seed, eos_token_id=config.text_config.eos_token_id,
               pad_token_id=config.text_config.pad_token_id)
    save_processor(build_processor(parent, tokenizer), tokenizer, out_dir)
