"""Tiny MiniCPM-V 2.6 / 4.0 / 4.5 and MiniCPM-o 2.6 / 4.5 checkpoints that ship their processor as remote code.

These models exist only as remote code (``trust_remote_code``): the checkpoint folder carries the
Python that builds the processor and the model. Kept real, because geometry depends on it: the
image processor is OpenBMB's own ``MiniCPMVImageProcessor``, from ``processing_minicpmo.py``
vendored verbatim in ``tests/data/minicpmv2_6`` (OpenBMB/MiniCPM-o-Demo, the MiniCPM-o 4.5 release),
with the published ``preprocessor_config.json`` numbers (448-pixel slices, patch 14, at most 9
slices, 64 tokens a view, image ids on); for ``minicpmv4_5`` a subclass adds the ``temporal_ids``
MiniCPM-V 4.5's processor also returns (``minicpm_remote/image_processing_minicpmv.py``). So
ms-swift's real ``MiniCPMV2_6Template`` / ``MiniCPMV4_5Template`` / ``MiniCPMO4_5Template`` encode
offline with OpenBMB's arithmetic and placeholders.

Not kept: the model. OpenBMB's modeling code (SigLIP + resampler + Qwen2/3 or MiniCPM4, written for
transformers 4.x) is replaced by a stand-in with the same interface (``minicpm_remote/``: a Qwen2 LM,
a patch projection, a resampler of ``query_num`` queries), and the token ids: ms-swift hard-codes
none for these templates (it tokenizes ``<unk>``, ``<image>``, ``<slice>`` by name), so a 32,000-id
filler vocabulary with the special tokens after it serves (a random model then rarely samples one).

Built only from a source checkout: the vendored reference lives in tests/data, not in the wheel.
"""
from __future__ import annotations

import json
import os
import shutil

from .common import HIDDEN_SIZE, NUM_HEADS, build_tokenizer

PARENTS = ('minicpmv2_6', 'minicpmv4', 'minicpmv4_5', 'minicpmo', 'minicpmo4_5')

_HERE = os.path.dirname(os.path.abspath(__file__))
REMOTE_DIR = os.path.join(_HERE, 'minicpm_remote')
REFERENCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(_HERE))), 'tests', 'data',
                             'minicpmv2_6')
REFERENCE = os.path.join(REFERENCE_DIR, 'processing_minicpmo.py')

# Each published checkpoint's processor `version` and the model class its config.json names.
VERSIONS = {'minicpmv2_6': 2.6, 'minicpmv4': 4.0, 'minicpmv4_5': 4.5, 'minicpmo': 2.6, 'minicpmo4_5': 4.5}
FIRST_SPECIAL_ID = 32000
SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<unk>', '<image>', '</image>', '<slice>',
                  '</slice>', '<image_id>', '</image_id>', '<ref>', '</ref>', '<box>', '</box>', '<think>',
                  '</think>', '<|audio_start|>', '<|audio_end|>')
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_minicpm_tokenizer():
    specials = [(token, FIRST_SPECIAL_ID + i, True) for i, token in enumerate(SPECIAL_TOKENS)]
    return build_tokenizer(specials, chat_template=CHAT_TEMPLATE, first_special_id=FIRST_SPECIAL_ID,
                           eos_token='<|im_end|>', pad_token='<|endoftext|>', unk_token='<unk>')


def preprocessor_config(parent: str) -> dict:
    """The published ``preprocessor_config.json`` with ``parent``'s version and this checkpoint's classes."""
    with open(os.path.join(REFERENCE_DIR, 'preprocessor_config.json'), encoding='utf-8') as f:
        config = json.load(f)
    image_processor = 'processing_minicpmo.MiniCPMVImageProcessor'
    if parent == 'minicpmv4_5':
        image_processor = 'image_processing_minicpmv.MiniCPMV4_5ImageProcessor'
        config['image_processor_type'] = 'MiniCPMV4_5ImageProcessor'
    config['auto_map'] = {'AutoProcessor': 'processing_minicpmo.MiniCPMOProcessor',
                          'AutoImageProcessor': image_processor,
                          'AutoFeatureExtractor': 'processing_minicpmo.MiniCPMAAudioProcessor'}
    config['version'] = VERSIONS[parent]
    return config


def _config(parent: str, tokenizer) -> dict:
    eos, pad = tokenizer.convert_tokens_to_ids('<|im_end|>'), tokenizer.convert_tokens_to_ids('<|endoftext|>')
    return dict(model_type='minicpmv', architectures=['MiniCPMO' if parent.startswith('minicpmo') else 'MiniCPMV'],
                auto_map={'AutoConfig': 'configuration_minicpm.MiniCPMVConfig',
                          'AutoModel': 'modeling_minicpmv.MiniCPMV',
                          'AutoModelForCausalLM': 'modeling_minicpmv.MiniCPMV'},
                vocab_size=len(tokenizer), hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                max_position_embeddings=32768, tie_word_embeddings=True, bos_token_id=pad, eos_token_id=eos,
                pad_token_id=pad, query_num=64, patch_size=14, vision_hidden_size=HIDDEN_SIZE, slice_mode=True,
                dtype='float32')


def build(parent: str, out_dir: str, seed: int) -> None:
    """Write a tiny ``parent`` checkpoint (remote code, config, weights, tokenizer, processor) into ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    if not os.path.isfile(REFERENCE):
        raise FileNotFoundError(f"The tiny {parent} checkpoint ships OpenBMB's processor, vendored at {REFERENCE}; "
                                'build it from a source checkout of swift-ext (the wheel does not carry tests/data).')
    tokenizer = build_minicpm_tokenizer()
    tokenizer.save_pretrained(out_dir)
    shutil.copyfile(REFERENCE, os.path.join(out_dir, 'processing_minicpmo.py'))
    names = ['configuration_minicpm.py', 'modeling_minicpmv.py']
    names += ['image_processing_minicpmv.py'] if parent == 'minicpmv4_5' else []
    for name in names:
        shutil.copyfile(os.path.join(REMOTE_DIR, name), os.path.join(out_dir, name))
    with open(os.path.join(out_dir, 'preprocessor_config.json'), 'w', encoding='utf-8') as f:
        json.dump(preprocessor_config(parent), f, indent=2)
    with open(os.path.join(out_dir, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(_config(parent, tokenizer), f, indent=2)
    config = AutoConfig.from_pretrained(out_dir, trust_remote_code=True)
    with torch.random.fork_rng(devices=[]):  # seed the weights without changing the caller's random state
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=True, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out_dir)
