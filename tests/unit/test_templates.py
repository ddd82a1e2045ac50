"""The `_geo` templates: identical encodes to their ms-swift parents, and the geometry they record
equals what qwen-vl-utils / ms-swift / transformers really did to each image."""
import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families.internvl import internvl_geometry
from swift_ext.geometry import GeometryError
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract

QWEN = ['qwen2_vl', 'qwen2_5_vl', 'qwen3_vl']
INTERNVL_HF = ['internvl_hf', 'interns1']  # one template class, one processor
ALL = QWEN + INTERNVL_HF


@pytest.fixture(scope='module')
def processors(tiny_model):
    from swift.model import get_processor

    from swift_ext.testing.tiny import run_flags
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = get_processor(tiny_model(family), model_type=run_flags(family)['model_type'])
        return cache[family]
    return get


def _recorded(template_name, path, limits=(None, None)):
    return STORE.get(image_key(path), limits, template_name)


@pytest.mark.parametrize('family', ALL)
def test_encode_identical_to_parent(processors, sample_images, family):
    # Same input_ids, labels, pixel_values, image_grid_thw for the same sample, 1-3 images.
    proc = processors(family)
    parent, geo = contract.template(proc, family), contract.template(proc, family + '_geo')
    for names in (['landscape'], ['tiny', 'portrait'], ['wide', 'square', 'landscape']):
        sample = contract.sample([sample_images[n] for n in names])
        contract.assert_same_encode(parent.encode(sample), geo.encode(sample))


@pytest.mark.parametrize('family', QWEN)
@pytest.mark.parametrize('name', ['tiny', 'landscape', 'portrait', 'wide', 'square'])
def test_qwen_geometry_is_what_fetch_image_did(processors, sample_images, family, name):
    from qwen_vl_utils import fetch_image
    proc = processors(family)
    tpl = contract.template(proc, family + '_geo')
    path = sample_images[name]
    encoded = tpl.encode(contract.sample([path]))
    geo = _recorded(family + '_geo', path)
    patch = 16 if family == 'qwen3_vl' else 14
    fetched = fetch_image({'image': path}, image_patch_size=patch)
    assert (geo.original_width, geo.original_height) == Image.open(path).size
    assert (geo.resized_width, geo.resized_height) == fetched.size
    assert list(geo.grid) == encoded['image_grid_thw'][0].tolist()
    assert geo.num_tokens == int((encoded['input_ids'] == 151655).sum()
                                 if isinstance(encoded['input_ids'], torch.Tensor)
                                 else encoded['input_ids'].count(151655))


@pytest.mark.parametrize('parent', INTERNVL_HF)
@pytest.mark.parametrize('name', ['tiny', 'landscape', 'portrait', 'wide', 'square'])
def test_internvl_hf_geometry_is_what_the_processor_did(processors, sample_images, parent, name):
    proc = processors(parent)
    tpl = contract.template(proc, parent + '_geo')
    path = sample_images[name]
    encoded = tpl.encode(contract.sample([path]))
    geo = _recorded(parent + '_geo', path)
    tiles = proc.image_processor(images=[Image.open(path).convert('RGB')], crop_to_patches=True,
                                 return_tensors='pt')['num_patches'][0]
    assert geo.num_tiles == int(tiles) == encoded['pixel_values'].shape[0]
    ctx = proc.tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>')
    assert geo.num_tokens == list(encoded['input_ids']).count(ctx)
    assert geo.thumbnail == (geo.num_tiles > 1)


def test_swift_max_pixels_prerescale(processors, sample_images):
    # `--max_pixels` shrinks the image before smart_resize; original stays the file's size.
    tpl = contract.template(processors('qwen2_5_vl'), 'qwen2_5_vl_geo', max_pixels=50176)
    path = sample_images['landscape']  # 640x480 -> 258x193 by ms-swift -> 252x196
    encoded = tpl.encode(contract.sample([path]))
    geo = _recorded('qwen2_5_vl_geo', path)
    assert (geo.original_width, geo.original_height) == (640, 480)
    assert (geo.resized_width, geo.resized_height) == (252, 196)
    assert list(geo.grid) == encoded['image_grid_thw'][0].tolist()


def test_env_max_pixels(processors, sample_images, monkeypatch):
    # MAX_PIXELS ends up as qwen-vl-utils' IMAGE_MAX_TOKEN_NUM (what ms-swift's patch sets).
    from qwen_vl_utils import vision_process
    monkeypatch.setattr(vision_process, 'IMAGE_MAX_TOKEN_NUM', 50176 // 28 ** 2)
    tpl = contract.template(processors('qwen2_5_vl'), 'qwen2_5_vl_geo')
    path = sample_images['landscape']
    tpl.encode(contract.sample([path]))
    geo = _recorded('qwen2_5_vl_geo', path)
    assert (geo.resized_width, geo.resized_height) == (252, 168)  # not the pre-rescale's 252x196
    assert tpl.geo_settings().max_pixels == 50176


def test_row_chat_template_kwargs(processors, sample_images):
    # A row's chat_template_kwargs limits reach fetch_image for that row only.
    tpl = contract.template(processors('qwen2_5_vl'), 'qwen2_5_vl_geo')
    path = sample_images['landscape']
    tpl.encode(contract.sample([path]))
    encoded = tpl.encode(contract.sample([path], chat_template_kwargs={'max_pixels': 100000}))
    geo = _recorded('qwen2_5_vl_geo', path, (None, 100000))
    assert (geo.resized_width, geo.resized_height) == (364, 252)
    assert list(geo.grid) == encoded['image_grid_thw'][0].tolist()
    assert _recorded('qwen2_5_vl_geo', path).resized_width == 644  # the row without the limit


@pytest.mark.parametrize('base', ['internvl2_5', 'internvl3_5'])
@pytest.mark.parametrize('max_num', [12, 4])
def test_remote_code_internvl_templates(processors, sample_images, base, max_num, monkeypatch):
    # internvl2_5 / internvl3_5 checkpoints need remote code, so these encode with the
    # tiny InternVL tokenizer: ms-swift's own transform_image cuts the tiles.
    from swift.template import get_template
    monkeypatch.setenv('MAX_NUM', str(max_num))
    proc = processors('internvl_hf')
    tok = proc.tokenizer
    tok.model_info, tok.model_meta = proc.model_info, proc.model_meta
    parent = get_template(tok, template_type=base)
    geo_tpl = get_template(tok, template_type=base + '_geo')
    for t in (parent, geo_tpl):
        t.set_mode('train')
    for name in ('landscape', 'wide', 'tiny'):
        path = sample_images[name]
        a, b = parent.encode(contract.sample([path])), geo_tpl.encode(contract.sample([path]))
        contract.assert_same_encode(a, b)
        geo = _recorded(base + '_geo', path)
        w, h = Image.open(path).size
        expected = internvl_geometry(width=w, height=h, max_num=max_num)
        assert geo.num_tiles == b['pixel_values'].shape[0] == expected.num_tiles
        assert (geo.tile_cols, geo.tile_rows) == (expected.tile_cols, expected.tile_rows)


@pytest.mark.parametrize('make,match', [
    (lambda d: str(d / 'missing.png'), 'missing.png: image file does not exist'),
    (lambda d: _write(d / 'zero.png', b''), 'zero.png: image file is empty'),
    (lambda d: _write(d / 'junk.png', b'garbage'), 'junk.png: not a readable image'),
    (lambda d: _save(d / 'thin.png', (1, 300)), 'thin.png: aspect ratio must be at most 200'),
])
def test_bad_images_raise_named_errors(processors, tmp_path, make, match):
    # The parent raises too (ms-swift's --strict handling applies); ours names file and rule.
    tpl = contract.template(processors('qwen2_5_vl'), 'qwen2_5_vl_geo')
    parent = contract.template(processors('qwen2_5_vl'), 'qwen2_5_vl')
    path = make(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 (the parent's exception type varies by case)
        parent.encode(contract.sample([path]))
    with pytest.raises(GeometryError, match=match):
        tpl.encode(contract.sample([path]))


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _save(path, size):
    Image.new('RGB', size).save(path)
    return str(path)


def test_registration_is_idempotent_and_inherits_meta():
    from swift.template import TEMPLATE_MAPPING

    from swift_ext.families import template_names
    from swift_ext.templates import GEO_TEMPLATES, register_geo_templates
    names = register_geo_templates()
    assert names == register_geo_templates() == template_names()
    for name in names:
        cls = GEO_TEMPLATES[name]
        meta, parent = TEMPLATE_MAPPING[name], TEMPLATE_MAPPING[cls.geo_spec.parent]
        assert issubclass(cls, parent.template_cls)
        assert meta.prompt == parent.prompt and meta.default_system == parent.default_system


@pytest.mark.parametrize('family', ALL)
@pytest.mark.parametrize('max_pixels', [None, 50176])
def test_public_predict_geometry_equals_the_encode(processors, sample_images, family, max_pixels):
    # The public API, with no template in play, gives what the real encode recorded.
    import swift_ext
    tpl = contract.template(processors(family), family + '_geo', max_pixels=max_pixels)
    for name, path in sample_images.items():
        tpl.encode(contract.sample([path]))
        width, height = Image.open(path).size
        predicted = swift_ext.predict_geometry(family + '_geo', width=width, height=height,
                                               swift_max_pixels=max_pixels, env={})
        assert predicted == _recorded(family + '_geo', path), (name, max_pixels)
