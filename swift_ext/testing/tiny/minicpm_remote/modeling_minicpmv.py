"""A tiny checkpoint's stand-in for OpenBMB's ``modeling_minicpmv.py`` / ``modeling_minicpmo.py``.

Copied into tiny MiniCPM-V 2.6 / 4.0 / 4.5 and MiniCPM-o 2.6 / 4.5 checkpoints by
``swift_ext.testing.tiny.minicpmv2_6`` and loaded by transformers with ``trust_remote_code``; never
imported by swift-ext. It keeps the interface ms-swift's MiniCPM-V templates and loaders use
(``llm``, ``vpm``, ``resampler``, ``get_vllm_embedding``, MiniCPM-o's ``get_omni_embedding``) and
OpenBMB's contract between processor and model: each view of ``pixel_values`` is one
``[3, patch, h*w*patch]`` patch strip of the size ``tgt_sizes`` gives, and the resampler turns it
into ``query_num`` embeddings that replace the ``<unk>`` run ``image_bound`` marks. The vision
tower is a patch projection, not SigLIP: these checkpoints prove plumbing and geometry, not vision.
"""
import torch
from torch import nn
from transformers import PreTrainedModel, Qwen2ForCausalLM

from .configuration_minicpm import MiniCPMVConfig


class Resampler(nn.Module):
    """``query_num`` learned queries attending over one view's patch features."""

    def __init__(self, num_queries, embed_dim, kv_dim):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(num_queries, embed_dim))
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False)
        self.attn = nn.MultiheadAttention(embed_dim, 2, batch_first=True)

    def forward(self, features):
        kv = self.kv_proj(features).unsqueeze(0)
        out, _ = self.attn(self.query.unsqueeze(0).to(kv.dtype), kv, kv, need_weights=False)
        return out[0]


class MiniCPMV(PreTrainedModel):
    config_class = MiniCPMVConfig
    base_model_prefix = 'llm'
    _no_split_modules = []
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.llm = Qwen2ForCausalLM(config)
        self.vpm = nn.Linear(3 * config.patch_size ** 2, config.vision_hidden_size)
        self.resampler = Resampler(config.query_num, config.hidden_size, config.vision_hidden_size)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)  # Linear / Embedding / norms: transformers' N(0, 0.02) scheme
        if isinstance(module, Resampler):
            nn.init.normal_(module.query, std=0.02)

    def get_input_embeddings(self):
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.llm.get_output_embeddings()

    def view_embedding(self, pixels, size):
        """One view ``[3, p, h*w*p]`` (``size`` = (h, w) patches) -> ``[query_num, hidden]``."""
        p = self.config.patch_size
        h, w = (int(v) for v in size)
        if pixels.shape[-1] != h * w * p or pixels.shape[-2] != p:
            raise ValueError(f'a view of {tuple(pixels.shape)} pixels is not the {h}x{w} patches tgt_sizes says.')
        patches = pixels.reshape(3, p, h * w, p).permute(2, 0, 1, 3).reshape(h * w, 3 * p * p)
        return self.resampler(self.vpm(patches.to(self.vpm.weight.dtype)))

    def get_vllm_embedding(self, data):
        embeds = self.llm.get_input_embeddings()(data['input_ids'])
        rows, hidden = [], []
        for i, row in enumerate(embeds):
            views, sizes = data['pixel_values'][i], data['tgt_sizes'][i]
            if len(views) == 0:
                rows.append(row)
                hidden.append([])
                continue
            features = torch.stack([self.view_embedding(v, s) for v, s in zip(views, sizes, strict=True)])
            bounds = [(int(s), int(e)) for s, e in data['image_bound'][i]]
            positions = torch.cat([torch.arange(s, e) for s, e in bounds]).to(row.device)
            if positions.numel() != features.shape[0] * features.shape[1]:
                raise ValueError(f'{positions.numel()} image tokens, {features.shape[0]} views of '
                                 f'{features.shape[1]} features')
            rows.append(row.index_put((positions,), features.reshape(-1, row.shape[-1]).to(row.dtype)))
            hidden.append(features)
        return torch.stack(rows), hidden

    def get_omni_embedding(self, data, input_embeddings, chunk_length=1.0, **kwargs):
        audio = data.get('audio_features')
        if audio is not None and len(audio) > 0:
            raise ValueError('the tiny MiniCPM-o stand-in has no audio encoder.')
        return input_embeddings

    def forward(self, **kwargs):
        return self.llm(**kwargs)

    def generate(self, **kwargs):
        return self.llm.generate(**kwargs)
