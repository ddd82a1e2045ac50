"""Templates that reuse a covered ms-swift template class under another name (MiMo-VL, QVQ, InternVL2 /
InternVL2-Phi3 / InternVL3.5-GPT-OSS): each `_geo` template encodes byte-identically to its parent and
records the geometry that the family predicts and the real preprocessing produced.
(OvisOCR2, on Qwen3_5Template, is checked with the Qwen3.5 templates in test_family_qwen3_5.py.)"""
import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract

# alias -> (tiny checkpoint whose processor it runs with, the template it mirrors, family)
QWEN_ALIASES = {'mimo_vl': ('qwen2_5_vl', 'qwen2_5_vl', 'qwen'), 'qvq': ('qwen2_vl', 'qwen2_vl', 'qwen')}
INTERNVL_ALIASES = ('internvl2', 'internvl2_phi3', 'internvl3_5_gpt')
NAMES = ('tiny', 'landscape', 'wide')


def _ids(encoded):
    ids = encoded['input_ids']
    return ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)


@pytest.mark.parametrize('alias', list(QWEN_ALIASES))
def test_qwen_alias_encodes_like_its_parent(tiny_processor, sample_images, alias):
    from qwen_vl_utils import fetch_image
    from swift.template import TEMPLATE_MAPPING
    checkpoint, mirrored, family_name = QWEN_ALIASES[alias]
    family, spec = family_of(alias)
    assert family.name == family_name
    assert TEMPLATE_MAPPING[alias].template_cls is TEMPLATE_MAPPING[mirrored].template_cls
    assert spec.coords == family_of(mirrored)[1].coords  # same class, same norm_bbox
    proc = tiny_processor(checkpoint)
    parent, geo_tpl = contract.template(proc, alias), contract.template(proc, alias + '_geo')
    paths = [sample_images[n] for n in NAMES]
    a, b = parent.encode(contract.sample(paths)), geo_tpl.encode(contract.sample(paths))
    contract.assert_same_encode(a, b)
    settings = geo_tpl.geo_settings()
    grids = b['image_grid_thw'].tolist()
    assert _ids(b).count(151655) == sum(t * h * w // 4 for t, h, w in grids)
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), alias + '_geo')
        w, h = Image.open(path).size
        assert geo == settings.predict(width=w, height=h)[0]
        assert (geo.resized_width, geo.resized_height) == fetch_image({'image': path}).size  # patch 14
        assert list(geo.grid) == grids[i]


def test_alias_coordinates_follow_swift_norm_bbox():
    from swift.template import TEMPLATE_MAPPING
    conventions = {'none': 'abs', 'norm1000': 'norm1000'}
    for alias in list(QWEN_ALIASES) + list(INTERNVL_ALIASES):
        assert family_of(alias)[1].coords == conventions[TEMPLATE_MAPPING[alias].template_cls.norm_bbox], alias


@pytest.mark.parametrize('alias', INTERNVL_ALIASES)
@pytest.mark.parametrize('max_num', [12, 4])
def test_internvl_alias_encodes_like_its_parent(tiny_processor, sample_images, alias, max_num, monkeypatch):
    # Remote-code InternVL templates tile with ms-swift's own transform_image; they run here with the tiny
    # InternVL tokenizer (the encode needs no model). MAX_NUM is read from the environment at init.
    from swift.template import get_template
    from swift.template.vision_utils import load_image, transform_image
    monkeypatch.setenv('MAX_NUM', str(max_num))
    family, _ = family_of(alias)
    assert family.name == 'internvl'
    proc = tiny_processor('internvl_hf')
    tok = proc.tokenizer
    tok.model_info, tok.model_meta = proc.model_info, proc.model_meta
    parent, geo_tpl = get_template(tok, template_type=alias), get_template(tok, template_type=alias + '_geo')
    for t in (parent, geo_tpl):
        t.set_mode('train')
    settings = geo_tpl.geo_settings()
    assert settings.max_num == max_num
    paths = [sample_images[n] for n in NAMES]
    a, b = parent.encode(contract.sample(paths)), geo_tpl.encode(contract.sample(paths))
    contract.assert_same_encode(a, b)
    context = tok.convert_tokens_to_ids('<IMG_CONTEXT>')
    tiles = [transform_image(load_image(p), 448, max_num).shape[0] for p in paths]
    assert b['pixel_values'].shape[0] == sum(tiles)
    assert _ids(b).count(context) == 256 * sum(tiles)
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), alias + '_geo')
        w, h = Image.open(path).size
        assert geo == settings.predict(width=w, height=h)[0]
        assert geo.num_tiles == tiles[i] and geo.num_tokens == 256 * tiles[i]
