"""InternVL through transformers (``internvl_hf``): GotOcr2's tiling, in its own grid order.

The same tiling as ms-swift's InternVL, but the candidate grids are enumerated the way
transformers' ``GotOcr2ImageProcessor`` does (cols-major, stable-sorted by area), which
breaks ties between grids of equal area differently; the limits come from the processor
(``min_patches`` / ``max_patches``, ``crop_size``, ``image_seq_length``), not the environment.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from ..geometry import GeometryError
from . import register_family
from .base import TemplateSpec
from .encoded import token_id, token_spans
from .internvl import MAX_TILES, Internvl, InternvlSettings, TileGrids
from .video_hf import ProcessorSampledVideo, split_runs


@functools.lru_cache(maxsize=64)
def hf_tile_grids(min_num: int, max_num: int) -> TileGrids:
    """Tile grids (cols, rows) in the order GotOcr2's ``get_all_supported_aspect_ratios`` gives.

    Its loop is ``for w in 1..max_num: for h in 1..max_num`` then a stable sort by area; only the
    ``h <= max_num // w`` can qualify, so those are the ones listed (same order, no quadratic scan).
    """
    grids = [(w, h) for w in range(1, max_num + 1) for h in range(1, max_num // w + 1) if min_num <= w * h]
    return TileGrids.of(sorted(grids, key=lambda x: x[0] * x[1]))


@dataclass(frozen=True)
class InternvlHfSettings(InternvlSettings):
    def tile_grids(self) -> TileGrids:
        if self.max_num > MAX_TILES:
            raise GeometryError(f'swift-ext predicts InternVL tilings of at most {MAX_TILES} tiles (max_patches), '
                                f'got {self.max_num}.')
        return hf_tile_grids(self.min_num, self.max_num)


@register_family
class InternvlHf(ProcessorSampledVideo, Internvl):
    name = 'internvl_hf'
    settings_cls = InternvlHfSettings
    env_vars = ()
    templates = (
        TemplateSpec('internvl_hf', 'norm1000', ('internvl_box',), model_type='internvl',
                     coords_source='InternVL grounding format: <box>[[x1, y1, x2, y2]]</box> in 0-1000'),
        # Intern-S1 / S1-mini: InternViT + Qwen3 on the same template class and GotOcr2 image processor
        # (transformers' InternS1Processor is an InternVLProcessor); its model card documents no box output.
        TemplateSpec('interns1', 'norm1000', ('internvl_box', 'bare_list'), model_type='internvl', boxes_trained=False,
                     coords_source='no box output documented for Intern-S1 (model card, user guide); closest '
                                   "default: InternVL's <box>[[x1, y1, x2, y2]]</box> in 0-1000 (same vision stack)"),
    )

    @classmethod
    def settings_from_env(cls, settings, env):
        return settings  # the processor's own max_patches / crop_size: ms-swift's MAX_NUM / INPUT_SIZE do not apply

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        size = getattr(ip, 'crop_size', None) or getattr(ip, 'size', None) or {}
        return replace(settings, image_size=int(size.get('height', 448)),
                       min_num=int(getattr(ip, 'min_patches', 1)), max_num=int(getattr(ip, 'max_patches', 12)),
                       tokens_per_tile=int(getattr(template.processor, 'image_seq_length', 256)))

    # --- video: InternVLVideoProcessor samples nothing by default (do_sample_frames False): every frame
    # transformers' loader decoded is a 448 x 448 tile, "FrameN: <img>" + a run of <IMG_CONTEXT> + "</img>"
    # (``families/video_hf.py``); the encode writes frame numbers, no time.
    video_encoded_keys = ('input_ids',)

    @classmethod
    def video_frames(cls, template, encoded, ids, counts):
        size = template.processor.video_processor.size
        side = int(size['height'] if isinstance(size, dict) else size.height)
        patch = int(getattr(template.processor.image_processor, 'patch_size', 14) or 14)
        runs = token_spans(ids, token_id(template, '<IMG_CONTEXT>'))
        return [None if frames is None else ((side, side), (len(frames), side // patch, side // patch),
                                             [n for _, n in frames], ())
                for frames in split_runs(runs, counts)]
