"""Tiny Qwen3.5 checkpoint (``Qwen3_5ForConditionalGeneration``) for ms-swift's ``qwen3_5`` family.

One checkpoint serves the three generative templates on ms-swift's ``Qwen3_5Template`` class
(``qwen3_5``, ``qwen3_8``, ``ovis_ocr2``): they share the model type ``qwen3_5`` / ``ovis_ocr2``,
the tokenizer and the processor; only the prompt layout differs.

What is kept real, because geometry and ms-swift depend on it:

- the special tokens at the ids of the public Qwen3.5 tokenizer (vocabulary 248,320). They
  follow Qwen3-VL's order shifted by 96,401: ``<|endoftext|>`` 248044, ``<|im_start|>`` 248045,
  ``<|im_end|>`` 248046, ``<|vision_pad|>`` 248055 (the pad id), ``<|vision_start|>`` /
  ``<|vision_end|>`` 248053 / 248054 and ``<|image_pad|>`` / ``<|video_pad|>`` 248056 / 248057
  (transformers' ``Qwen3_5Config`` defaults, hard-coded in ms-swift's ``Qwen3_5Template``),
  ``<think>`` 248068;
- the image processor: patch 16, merge 2, temporal patch 2, ``shortest_edge`` 65536,
  ``longest_edge`` 16777216, mean/std 0.5 (as Qwen3-VL);
- the architecture: one Gated-DeltaNet (linear attention) layer and one full-attention layer,
  so transformers' pure-PyTorch fallbacks for the ``fla`` / ``causal_conv1d`` kernels run.

Everything else is toy-sized: hidden size 16, so the tied 248,320-row embedding is 16 MB.
"""
from __future__ import annotations

from . import common

PARENTS = ('qwen3_5', 'qwen3_8', 'ovis_ocr2')

VOCAB_SIZE = 248320
HIDDEN_SIZE = 16
HEAD_DIM = 32  # full attention; partial_rotary_factor 0.25 -> 8 rotary dims -> mrope sums to 4
MROPE_SECTION = [2, 1, 1]
PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
MIN_PIXELS = 65536
MAX_PIXELS = 16777216

FIRST_SPECIAL_ID = 248044
# (token, id, special): Qwen3-VL's added tokens at Qwen3.5's ids.
SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = tuple(
    (token, FIRST_SPECIAL_ID + i, i < 14) for i, token in enumerate((
        '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>',
        '<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>',
        '<|vision_end|>', '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>',
        '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>',
        '<tool_response>', '</tool_response>', '<think>', '</think>')))
TOKEN_IDS: dict[str, int] = {token: token_id for token, token_id, _ in SPECIAL_TOKENS}

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


def build_tokenizer():
    """A ``Qwen3_5Tokenizer`` whose special tokens sit at Qwen3.5's ids (checked, not assumed)."""
    from transformers import Qwen3_5Tokenizer

    tokenizer = common.build_tokenizer(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, first_special_id=FIRST_SPECIAL_ID,
                                       eos_token='<|im_end|>', pad_token='<|endoftext|>',
                                       tokenizer_cls=Qwen3_5Tokenizer)
    for token, token_id, _ in SPECIAL_TOKENS:
        if tokenizer.convert_tokens_to_ids(token) != token_id:
            raise RuntimeError(f'tiny Qwen3.5 tokenizer put {token} at {tokenizer.convert_tokens_to_ids(token)}, '
                               f'should be {token_id}.')
    return tokenizer


def build_config():
    import transformers as tf

    text = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=2, layer_types=['linear_attention', 'full_attention'],
                num_attention_heads=2, num_key_value_heads=1, head_dim=HEAD_DIM,
                linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=8,
                linear_value_head_dim=8, linear_conv_kernel_dim=4, max_position_embeddings=32768,
                rope_parameters={'rope_type': 'default', 'rope_theta': 1e7, 'partial_rotary_factor': 0.25,
                                 'mrope_section': MROPE_SECTION, 'mrope_interleaved': True},
                tie_word_embeddings=True, bos_token_id=None, eos_token_id=TOKEN_IDS['<|im_end|>'],
                pad_token_id=TOKEN_IDS['<|endoftext|>'])
    vision = dict(depth=1, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_heads=2,
                  patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                  out_hidden_size=HIDDEN_SIZE, num_position_embeddings=2304)
    return tf.Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=True,
                            image_token_id=TOKEN_IDS['<|image_pad|>'], video_token_id=TOKEN_IDS['<|video_pad|>'],
                            vision_start_token_id=TOKEN_IDS['<|vision_start|>'],
                            vision_end_token_id=TOKEN_IDS['<|vision_end|>'])


def build_processor(tokenizer):
    """``Qwen3VLProcessor`` (what transformers' AutoProcessor maps qwen3_5 to), real settings."""
    import transformers as tf

    settings = dict(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                    image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return tf.Qwen3VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(size={'shortest_edge': MIN_PIXELS, 'longest_edge': MAX_PIXELS},
                                                 **settings),
        video_processor=tf.Qwen3VLVideoProcessor(size={'shortest_edge': 4096, 'longest_edge': 25165824}, fps=2,
                                                 min_frames=4, max_frames=768, **settings),
        tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    """Write a tiny Qwen3.5 checkpoint for ``parent`` (one of PARENTS) into ``out_dir``."""
    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tokenizer = build_tokenizer()
    common.save_model('Qwen3_5ForConditionalGeneration', build_config(), out_dir, seed,
                      eos_token_id=[TOKEN_IDS['<|im_end|>'], TOKEN_IDS['<|endoftext|>']],
                      pad_token_id=TOKEN_IDS['<|endoftext|>'])
    common.save_processor(build_processor(tokenizer), tokenizer, out_dir)
