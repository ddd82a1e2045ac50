"""A tiny checkpoint's stand-in for OpenBMB's ``configuration_minicpm.py`` (MiniCPM-V / MiniCPM-o remote code).

Copied into tiny MiniCPM-V 2.6 / 4.0 / 4.5 and MiniCPM-o 2.6 / 4.5 checkpoints by
``swift_ext.testing.tiny.minicpmv2_6`` and loaded by transformers with ``trust_remote_code``; never
imported by swift-ext. Like OpenBMB's, the config is the language model's (Qwen2) plus the vision
fields the model reads: ``query_num`` (the resampler's tokens per view, the processor's
``image_feature_size``), ``patch_size`` and ``slice_mode``.
"""
from transformers import Qwen2Config


class MiniCPMVConfig(Qwen2Config):
    model_type = 'minicpmv'

    def __init__(self, query_num=64, patch_size=14, vision_hidden_size=32, slice_mode=True, **kwargs):
        self.query_num = query_num
        self.patch_size = patch_size
        self.vision_hidden_size = vision_hidden_size
        self.slice_mode = slice_mode
        super().__init__(**kwargs)
