"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints.

Kept real, because geometry depends on it: the special-token ids (ms-swift hard-codes
``151655`` / ``151656`` for the image and video pads) and the image-processor settings
(Qwen2/2.5-VL patch 14, merge 2, temporal patch 2, min_pixels 3136, max_pixels 12845056;
Qwen3-VL patch 16, merge 2). ``mrope_section`` must sum to head_dim / 2.
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

PARENTS = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl')

MROPE_SECTION = [2, 3, 3]  # must sum to head_dim / 2
QWEN_VOCAB_SIZE = 151936
FIRST_SPECIAL_ID = 151643
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

QWEN2_VL_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
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
SPECIAL_TOKENS = {'qwen2_vl': QWEN2_VL_SPECIAL_TOKENS, 'qwen2_5_vl': QWEN2_5_SPECIAL_TOKENS,
                  'qwen3_vl': QWEN3_VL_SPECIAL_TOKENS}
MODEL_CLASS_NAMES = {'qwen2_vl': 'Qwen2VLForConditionalGeneration',
                     'qwen2_5_vl': 'Qwen2_5_VLForConditionalGeneration',
                     'qwen3_vl': 'Qwen3VLForConditionalGeneration'}


def qwen_text_config(vocab_size: int = QWEN_VOCAB_SIZE, **extra) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
                bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, **extra)


def qwen_vision_config(**extra) -> dict:
    return dict(depth=2, hidden_size=HIDDEN_SIZE, num_heads=NUM_HEADS, spatial_merge_size=MERGE_SIZE,
                temporal_patch_size=TEMPORAL_PATCH_SIZE, **extra)


def tokenizer(parent: str):
    chat = QWEN3_CHAT_TEMPLATE if parent == 'qwen3_vl' else QWEN_CHAT_TEMPLATE
    return build_tokenizer(SPECIAL_TOKENS[parent], chat_template=chat, first_special_id=FIRST_SPECIAL_ID,
                           eos_token='<|im_end|>', pad_token='<|endoftext|>')


def config(parent: str):
    """The model config: real token ids and geometry, toy widths."""
    import transformers as tf

    qwen_ids = dict(image_token_id=151655, video_token_id=151656,
                    vision_start_token_id=151652, vision_end_token_id=151653)
    mrope = {'rope_type': 'default', 'mrope_section': MROPE_SECTION, 'rope_theta': 1e6}
    if parent == 'qwen2_vl':
        return tf.Qwen2VLConfig(
            text_config=qwen_text_config(rope_parameters=mrope),
            vision_config=qwen_vision_config(embed_dim=HIDDEN_SIZE, mlp_ratio=2, patch_size=QWEN2_PATCH_SIZE),
            tie_word_embeddings=True, **qwen_ids)
    if parent == 'qwen2_5_vl':
        return tf.Qwen2_5_VLConfig(
            text_config=qwen_text_config(rope_parameters=mrope),
            vision_config=qwen_vision_config(
                intermediate_size=2 * HIDDEN_SIZE, out_hidden_size=HIDDEN_SIZE, patch_size=QWEN2_PATCH_SIZE,
                window_size=112, fullatt_block_indexes=[1], tokens_per_second=2),
            tie_word_embeddings=True, **qwen_ids)
    return tf.Qwen3VLConfig(
        text_config=qwen_text_config(head_dim=HIDDEN_SIZE // NUM_HEADS,
                                     rope_parameters={**mrope, 'mrope_interleaved': True, 'rope_theta': 5e6}),
        vision_config=qwen_vision_config(
            intermediate_size=2 * HIDDEN_SIZE, out_hidden_size=HIDDEN_SIZE, patch_size=QWEN3_PATCH_SIZE,
            num_position_embeddings=2304, deepstack_visual_indexes=[1]),
        tie_word_embeddings=True, **qwen_ids)


def processor(parent: str, tok):
    """The processor with the real image and video processor settings."""
    import transformers as tf

    parts = dict(tokenizer=tok, chat_template=tok.chat_template)
    if parent in ('qwen2_vl', 'qwen2_5_vl'):
        settings = dict(min_pixels=QWEN2_MIN_PIXELS, max_pixels=QWEN2_MAX_PIXELS, patch_size=QWEN2_PATCH_SIZE,
                        merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
        processor_cls = tf.Qwen2VLProcessor if parent == 'qwen2_vl' else tf.Qwen2_5_VLProcessor
        return processor_cls(image_processor=tf.Qwen2VLImageProcessor(**settings),
                             video_processor=tf.Qwen2VLVideoProcessor(**settings), **parts)
    settings = dict(patch_size=QWEN3_PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                    image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return tf.Qwen3VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(
            size={'shortest_edge': QWEN3_MIN_PIXELS, 'longest_edge': QWEN3_MAX_PIXELS}, **settings),
        video_processor=tf.Qwen3VLVideoProcessor(
            size={'shortest_edge': QWEN3_VIDEO_MIN_PIXELS, 'longest_edge': QWEN3_VIDEO_MAX_PIXELS},
            fps=2, min_frames=4, max_frames=768, **settings),
        **parts)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    save_model(MODEL_CLASS_NAMES[parent], config(parent), out_dir, seed, eos_token_id=[151645, 151643],
               pad_token_id=151643)
    save_processor(processor(parent, tok), tok, out_dir)
