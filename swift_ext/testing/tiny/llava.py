"""Tiny LLaVA-1.5 checkpoint (``LlavaForConditionalGeneration``) for ``llava1_5_hf``.

Kept real (llava-hf/llava-1.5-7b-hf): Llama's ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, ``<image>`` 32000
(the template looks it up from ``processor.image_token``), ``<pad>`` 32001, vocabulary 32064; a CLIP
tower with 336-pixel views, patch 14, ``vision_feature_layer`` -2, strategy 'default'; the processor's
``num_additional_image_tokens`` 1; ``CLIPImageProcessor`` with ``size={'shortest_edge': 336}``, a
336x336 centre crop and CLIP mean / std, as the public ``preprocessor_config.json``. The tokenizer is a
byte-level BPE (``Qwen2Tokenizer`` class): only the ids matter to the template.
Run with ``--model_type llava1_5_hf``.
"""
from __future__ import annotations

from .common import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, save_model, save_processor
from .llava_next import NEXT_SPECIAL_TOKENS, NEXT_VOCAB_SIZE, _text_config, _vision_config, tokenizer_around

PARENTS = ('llava1_5_hf',)

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} "
    "{% else %}ASSISTANT: {{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def tokenizer(parent: str = 'llava1_5_hf'):
    return tokenizer_around(NEXT_SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, unk_token='<unk>', bos_token='<s>',
                            eos_token='</s>', pad_token='<pad>')


def config(parent: str = 'llava1_5_hf'):
    import transformers as tf

    return tf.LlavaConfig(
        text_config=_text_config('llama', NEXT_VOCAB_SIZE, bos_token_id=1, eos_token_id=2, pad_token_id=32001),
        vision_config=_vision_config('clip_vision_model', 336), image_token_index=32000, vision_feature_layer=-2,
        vision_feature_select_strategy='default', image_seq_length=576, tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    image_processor = tf.CLIPImageProcessor(
        size={'shortest_edge': 336}, crop_size={'height': 336, 'width': 336}, do_center_crop=True,
        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    return tf.LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                             vision_feature_select_strategy='default', num_additional_image_tokens=1,
                             chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    save_model('LlavaForConditionalGeneration', config(parent), out_dir, seed, eos_token_id=2, pad_token_id=32001)
    save_processor(processor(parent, tok), tok, out_dir)
