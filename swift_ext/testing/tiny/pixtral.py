"""Tiny Mistral 3 (``Mistral3ForConditionalGeneration``) and Pixtral (``LlavaForConditionalGeneration``).

Kept real, because geometry depends on it:

- the special-token ids of Mistral's tekken tokenizer: ms-swift's ``PixtralTemplate`` and
  ``Mistral2503Template`` hard-code ``[IMG]`` = 10; ``[IMG_BREAK]`` 12 and ``[IMG_END]`` 13 close each
  row. Tekken's first 1000 ids are control tokens, then the 256 bytes, then BPE merges; the
  vocabulary has 131,072 rows.
- the processor settings: Mistral Small 3.1 (2503; 3.2 and Ministral 3 share them)
  ``size={'longest_edge': 1540}``, patch 14, ``spatial_merge_size`` 2; pixtral-12b
  ``size={'longest_edge': 1024}``, patch 16, no merge. Bicubic resize, CLIP mean/std.

The tokenizer is a byte-level BPE (``Qwen2Tokenizer`` class), not tekken: only the ids matter to
the template. ``mistral_2506`` / ``mistral_2512*`` read ``SYSTEM_PROMPT.txt`` from the model
directory, so one is written. Run with ``--model_type mistral3`` (``mistral3_2506``'s loader fetches
a processor from the hub) or ``--model_type pixtral``.
"""
from __future__ import annotations

import os

from .common import (
    HIDDEN_SIZE,
    NUM_HEADS,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    save_model,
    save_processor,
    tokenizer_around,
)

PARENTS = ('mistral_2503', 'mistral_2506', 'mistral_2512', 'mistral_2512_thinking', 'pixtral')

MISTRAL_VOCAB_SIZE = 131072
NUM_CONTROL_TOKENS = 1000  # tekken: ids 0-999 are control tokens, bytes start at 1000
PIXTRAL_LONGEST_EDGE = 1024
PIXTRAL_PATCH_SIZE = 16
MISTRAL3_LONGEST_EDGE = 1540
MISTRAL3_PATCH_SIZE = 14
MISTRAL3_MERGE_SIZE = 2

MISTRAL_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<unk>', 0, True),
    ('<s>', 1, True),
    ('</s>', 2, True),
    ('[INST]', 3, True),
    ('[/INST]', 4, True),
    ('[AVAILABLE_TOOLS]', 5, True),
    ('[/AVAILABLE_TOOLS]', 6, True),
    ('[TOOL_RESULTS]', 7, True),
    ('[/TOOL_RESULTS]', 8, True),
    ('[TOOL_CALLS]', 9, True),
    ('[IMG]', 10, True),
    ('<pad>', 11, True),
    ('[IMG_BREAK]', 12, True),
    ('[IMG_END]', 13, True),
    ('[PREFIX]', 14, True),
    ('[MIDDLE]', 15, True),
    ('[SUFFIX]', 16, True),
    ('[SYSTEM_PROMPT]', 17, True),
    ('[/SYSTEM_PROMPT]', 18, True),
    ('[TOOL_CONTENT]', 19, True),
)
# Tekken's other control tokens, so the bytes start at id 1000 as in the real vocabulary.
CONTROL_FILLERS = tuple((f'<SPECIAL_{i}>', i, True) for i in range(len(MISTRAL_SPECIAL_TOKENS), NUM_CONTROL_TOKENS))
# 2506 formats it with name, today, yesterday; 2512 with today, yesterday only; 2512_thinking not at all.
SYSTEM_PROMPT = 'You are a tiny test model. Today is {today}; yesterday was {yesterday}.'
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ message['content'] }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}[IMG]"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}[/INST]"
    "{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def tokenizer(parent: str = 'mistral_2503'):
    return tokenizer_around(MISTRAL_SPECIAL_TOKENS + CONTROL_FILLERS, chat_template=MISTRAL_CHAT_TEMPLATE,
                            unk_token='<unk>', bos_token='<s>', eos_token='</s>', pad_token='<pad>')


def _text_config() -> dict:
    return dict(model_type='mistral', vocab_size=MISTRAL_VOCAB_SIZE, hidden_size=HIDDEN_SIZE,
                intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=2, num_attention_heads=NUM_HEADS,
                num_key_value_heads=NUM_HEADS, head_dim=HIDDEN_SIZE // NUM_HEADS, max_position_embeddings=32768,
                rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=11,
                sliding_window=None)


def _vision_config(patch_size: int, image_size: int) -> dict:
    return dict(model_type='pixtral', hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=1, num_attention_heads=NUM_HEADS, head_dim=HIDDEN_SIZE // NUM_HEADS,
                patch_size=patch_size, image_size=image_size, hidden_act='gelu')


def config(parent: str):
    import transformers as tf

    if parent == 'pixtral':
        return tf.LlavaConfig(text_config=_text_config(),
                              vision_config=_vision_config(PIXTRAL_PATCH_SIZE, PIXTRAL_LONGEST_EDGE),
                              image_token_index=10, vision_feature_layer=-1, vision_feature_select_strategy='full',
                              projector_hidden_act='gelu', multimodal_projector_bias=True, tie_word_embeddings=True)
    return tf.Mistral3Config(text_config=_text_config(),
                             vision_config=_vision_config(MISTRAL3_PATCH_SIZE, MISTRAL3_LONGEST_EDGE),
                             image_token_index=10, spatial_merge_size=MISTRAL3_MERGE_SIZE, vision_feature_layer=-1,
                             projector_hidden_act='gelu', multimodal_projector_bias=False, tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    pixtral = parent == 'pixtral'
    patch = PIXTRAL_PATCH_SIZE if pixtral else MISTRAL3_PATCH_SIZE
    edge = PIXTRAL_LONGEST_EDGE if pixtral else MISTRAL3_LONGEST_EDGE
    image_processor = tf.PixtralImageProcessor(size={'longest_edge': edge},
                                               patch_size={'height': patch, 'width': patch},
                                               image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    return tf.PixtralProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                               spatial_merge_size=1 if pixtral else MISTRAL3_MERGE_SIZE,
                               chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    cls = 'LlavaForConditionalGeneration' if parent == 'pixtral' else 'Mistral3ForConditionalGeneration'
    save_model(cls, config(parent), out_dir, seed, eos_token_id=2, pad_token_id=11)
    save_processor(processor(parent, tok), tok, out_dir)
    with open(os.path.join(out_dir, 'SYSTEM_PROMPT.txt'), 'w', encoding='utf-8') as f:
        f.write(SYSTEM_PROMPT)
