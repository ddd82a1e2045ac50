"""Tiny GLM-4.1V checkpoint (``Glm4vForConditionalGeneration``) for the ``glm4v`` and ``glm4_5v`` templates,
and a tiny GLM-OCR (``GlmOcrForConditionalGeneration``) for ``glm_ocr``.

ms-swift serves ``Glm4vForConditionalGeneration`` as model type ``glm4v`` with either
template (GLM-4.1V-9B-Thinking uses ``glm4v``; GLM-4.6V-Flash and Glyph, same architecture,
use ``glm4_5v``), so one architecture covers both parents; the template decides how the
tokens are expanded. GLM-4.5V itself is the MoE ``Glm4vMoeForConditionalGeneration`` with the
same processor.

Kept real: the GLM-4 special tokens at ids 151329-151342 (``<|begin_of_image|>`` 151339 and
``<|end_of_image|>`` 151340 are hard-coded in ms-swift's ``GLM4VTemplate``), ``<|image|>`` /
``<|video|>`` at 151343 / 151344 (``Glm4vConfig.image_token_id`` / ``video_token_id``), the
151552-row vocabulary, and GLM-4.1V-9B-Thinking's ``preprocessor_config.json``: patch 14,
merge 2, temporal patch 2, ``size`` shortest_edge 12544 / longest_edge 9633792, CLIP mean/std
(video: longest_edge 47040000). Tokens ms-swift does not hard-code (``<think>``, the box
tokens) sit at free ids above 151344.

GLM-OCR (zai-org/GLM-OCR): a 59,392-row vocabulary; ``<|begin_of_image|>`` 59256 / ``<|end_of_image|>``
59257 (hard-coded in ms-swift's ``GLMOCRTemplate``), ``<|image|>`` 59280 / ``<|video|>`` 59281 and the
video markers 59258 / 59259 (``GlmOcrConfig``'s defaults, the checkpoint's ids). The other GLM-4 special
tokens are laid out in GLM-4's order ending at 59255 (an assumption: only the ids above are read by
the template or the model). Processor: ``Glm46VProcessor`` with the same limits as GLM-4.1V
(shortest_edge 12544, longest_edge 9633792).
"""
from __future__ import annotations

from .common import (
    HIDDEN_SIZE,
    NUM_HEADS,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    build_tokenizer,
    save_model,
    save_processor,
)

PARENTS = ('glm4v', 'glm4_5v', 'glm_ocr')

GLM_VOCAB_SIZE = 151552
FIRST_SPECIAL_ID = 151329
GLM_SPECIAL_TOKENS = (
    ('<|endoftext|>', 151329, True),
    ('[MASK]', 151330, True),
    ('[gMASK]', 151331, True),
    ('[sMASK]', 151332, True),
    ('<sop>', 151333, True),
    ('<eop>', 151334, True),
    ('<|system|>', 151335, True),
    ('<|user|>', 151336, True),
    ('<|assistant|>', 151337, True),
    ('<|observation|>', 151338, True),
    ('<|begin_of_image|>', 151339, True),
    ('<|end_of_image|>', 151340, True),
    ('<|begin_of_video|>', 151341, True),
    ('<|end_of_video|>', 151342, True),
    ('<|image|>', 151343, True),
    ('<|video|>', 151344, True),
    ('<think>', 151345, False),
    ('</think>', 151346, False),
    ('<|begin_of_box|>', 151347, False),
    ('<|end_of_box|>', 151348, False),
)
OCR_VOCAB_SIZE = 59392
OCR_SPECIAL_TOKENS = tuple((token, token_id - 151329 + 59246, special)
                           for token, token_id, special in GLM_SPECIAL_TOKENS[:14]) + (
    ('<|image|>', 59280, True), ('<|video|>', 59281, True), ('<think>', 59282, False), ('</think>', 59283, False))
GLM_MIN_PIXELS = 12544
GLM_MAX_PIXELS = 9633792
GLM_VIDEO_MAX_PIXELS = 47040000
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2

GLM_CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif content['type'] == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def tokenizer(parent: str = 'glm4v'):
    if parent == 'glm_ocr':
        return build_tokenizer(OCR_SPECIAL_TOKENS, chat_template=GLM_CHAT_TEMPLATE, first_special_id=59246,
                               eos_token='<|endoftext|>', pad_token='<|endoftext|>')
    return build_tokenizer(GLM_SPECIAL_TOKENS, chat_template=GLM_CHAT_TEMPLATE, first_special_id=FIRST_SPECIAL_ID,
                           eos_token='<|endoftext|>', pad_token='<|endoftext|>')


def config(parent: str = 'glm4v'):
    import transformers as tf

    head_dim = HIDDEN_SIZE // NUM_HEADS
    # GLM-4.1V rotates half of each head (partial_rotary_factor 0.5); mrope_section splits
    # those head_dim / 4 frequencies over (t, h, w), as [8, 12, 12] does for head_dim 128.
    rope = {'rope_type': 'default', 'rope_theta': 10000.0, 'partial_rotary_factor': 0.5,
            'mrope_section': [2, 1, 1]}
    assert sum(rope['mrope_section']) == head_dim // 4
    if parent == 'glm_ocr':
        return tf.GlmOcrConfig(
            text_config=dict(vocab_size=OCR_VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                             num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                             max_position_embeddings=32768, rope_parameters=rope, pad_token_id=59246),
            vision_config=dict(depth=2, hidden_size=HIDDEN_SIZE, num_heads=NUM_HEADS,
                               intermediate_size=2 * HIDDEN_SIZE, out_hidden_size=HIDDEN_SIZE, patch_size=PATCH_SIZE,
                               spatial_merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                               image_size=336),
            tie_word_embeddings=True)
    return tf.Glm4vConfig(
        text_config=dict(vocab_size=GLM_VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                         num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                         max_position_embeddings=32768, rope_parameters=rope, pad_token_id=151329),
        vision_config=dict(depth=2, hidden_size=HIDDEN_SIZE, num_heads=NUM_HEADS, intermediate_size=2 * HIDDEN_SIZE,
                           out_hidden_size=HIDDEN_SIZE, patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE,
                           temporal_patch_size=TEMPORAL_PATCH_SIZE, image_size=336),
        tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    common = dict(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                  image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, do_rescale=True)
    if parent == 'glm_ocr':
        return tf.Glm46VProcessor(
            image_processor=tf.Glm46VImageProcessor(
                size={'shortest_edge': GLM_MIN_PIXELS, 'longest_edge': GLM_MAX_PIXELS}, **common),
            video_processor=tf.Glm46VVideoProcessor(
                size={'shortest_edge': GLM_MIN_PIXELS, 'longest_edge': GLM_VIDEO_MAX_PIXELS}, **common),
            tokenizer=tok, chat_template=tok.chat_template)
    return tf.Glm4vProcessor(
        image_processor=tf.Glm4vImageProcessor(size={'shortest_edge': GLM_MIN_PIXELS, 'longest_edge': GLM_MAX_PIXELS},
                                               **common),
        video_processor=tf.Glm4vVideoProcessor(
            size={'shortest_edge': GLM_MIN_PIXELS, 'longest_edge': GLM_VIDEO_MAX_PIXELS}, **common),
        tokenizer=tok, chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    if parent == 'glm_ocr':
        save_model('GlmOcrForConditionalGeneration', config(parent), out_dir, seed,
                   eos_token_id=[59246, 59253, 59255], pad_token_id=59246)
    else:
        save_model('Glm4vForConditionalGeneration', config(parent), out_dir, seed,
                   eos_token_id=[151329, 151336, 151338], pad_token_id=151329)
    save_processor(processor(parent, tok), tok, out_dir)
