"""The family contract (swift_ext/families/base.py): the base class owns predict's shared steps and
settings_for; a family writes `resize` and its settings. Pure arithmetic: no model, no swift."""
import dataclasses

import pytest

from swift_ext.families import families, family_of, template_names
from swift_ext.families.base import Family, PreprocessSettings
from swift_ext.geometry import Clamp, GeometryError, swift_rescaled_size

FAMILIES = sorted(families().items())


@pytest.mark.parametrize('name,family', FAMILIES)
def test_every_family_writes_resize_and_never_predict(name, family):
    assert 'predict' not in vars(family)
    assert family.resize.__func__ is not Family.resize.__func__, name


def test_a_family_defining_predict_is_refused():
    with pytest.raises(TypeError, match='implements `resize`'):
        class Bad(Family):  # noqa: F841 (refused at class creation)
            @classmethod
            def predict(cls, settings, *, width, height, row_kwargs, name):
                raise AssertionError


@pytest.mark.parametrize('name,family', FAMILIES)
def test_tile_knob_is_a_settings_field(name, family):
    fields = {f.name for f in dataclasses.fields(family.settings_cls)}
    if family.tile_knob is None:
        assert not fields & {'max_num', 'max_slice_nums'}, name  # a tile cap plan would not sweep
    else:
        assert family.tile_knob in fields, name


@pytest.mark.parametrize('template', template_names())
def test_settings_for_drops_none_overrides(template):
    family, spec = family_of(template)
    fields = [f.name for f in dataclasses.fields(family.settings_cls)
              if f.name not in {g.name for g in dataclasses.fields(PreprocessSettings)}]
    plain = family.settings_for(spec.parent, env={}, swift_max_pixels=123456)
    assert family.settings_for(spec.parent, env={}, swift_max_pixels=123456,
                               overrides=dict.fromkeys(fields)) == plain
    assert plain.swift_max_pixels == 123456


@pytest.mark.parametrize('template', template_names())
@pytest.mark.parametrize('width,height', [(30, 30), (640, 480), (4000, 3000), (3000, 50)])
def test_predict_is_resize_on_the_prerescaled_size(template, width, height):
    family, spec = family_of(template)
    settings = family.settings_for(spec.parent, env={}, swift_max_pixels=100_000)
    try:
        geo, clamp = settings.predict(width=width, height=height)
    except GeometryError:
        with pytest.raises(GeometryError):
            w, h = swift_rescaled_size(width=width, height=height, max_pixels=100_000)
            family.resize(settings, width=w, height=h, row_kwargs={}, name='image')
        return
    w, h = swift_rescaled_size(width=width, height=height, max_pixels=100_000)
    own, own_clamp = family.resize(settings, width=w, height=h, row_kwargs={}, name='image')
    assert (geo.original_width, geo.original_height) == (width, height)
    assert dataclasses.replace(geo, original_width=w, original_height=h) == \
        dataclasses.replace(own, original_width=w, original_height=h)
    # ms-swift's pre-rescale comes first: where it shrank the image, it names the clamp.
    assert clamp == (Clamp.MAX_PIXELS if (w, h) != (width, height) else own_clamp)


@pytest.mark.parametrize('template', template_names())
@pytest.mark.parametrize('width,height', [(0, 10), (10, -1), (True, 10), (10.0, 10)])
def test_bad_sides_are_refused_by_every_family(template, width, height):
    family, spec = family_of(template)
    settings = family.default_settings(spec.parent)
    with pytest.raises(GeometryError, match='must be'):
        settings.predict(width=width, height=height, name='x.png')


DOCTESTED = ['swift_ext.geometry', 'swift_ext.settings'] + [f'swift_ext.families.{m}' for m in sorted(
    {f.__module__.rsplit('.', 1)[1] for _, f in FAMILIES} | {'base'})]


@pytest.mark.parametrize('module', DOCTESTED)
def test_doctests(module):
    import doctest
    import importlib
    assert doctest.testmod(importlib.import_module(module)).failed == 0


# --- the encode contract, on every family with a tiny checkpoint --------------------------------------------------
# One line a family: (parent template, sample overrides for swift_ext.testing.contract.sample). A new family with a
# tiny recipe adds its line here (test_every_family_with_a_tiny_checkpoint_has_an_encode_line says so).
TINY_ENCODES = {
    'florence': ('florence', {'prompt': '<OD>', 'tag': ''}),
    'gemma3': ('gemma3_vision', {}),
    'gemma4': ('gemma4', {}),
    'glm4v': ('glm4v', {'answer': '<|begin_of_box|>[1,2,3,4]<|end_of_box|>'}),
    'got_ocr2': ('got_ocr2_hf', {'prompt': 'OCR: ', 'answer': 'some text'}),
    'idefics3': ('idefics3', {}),
    'internvl_hf': ('internvl_hf', {}),
    'llama4': ('llama4', {}),
    'llava': ('llava1_5_hf', {}),
    'llava_next': ('llava1_6_mistral_hf', {}),
    'llava_onevision': ('llava_onevision_hf', {}),
    'llava_onevision1_5': ('llava_onevision1_5', {}),
    'minicpmv': ('minicpmv4_6', {}),
    'minicpmv2_6': ('minicpmv2_6', {}),
    'mllama': ('llama3_2_vision', {}),
    'paddle_ocr': ('paddle_ocr_1_5', {'prompt': 'OCR:', 'answer': 'hello'}),
    'paligemma': ('paligemma', {'prompt': 'detect car', 'answer': '<loc0020><loc0010><loc0400><loc0300> car'}),
    'phi4_multimodal': ('phi4_multimodal', {}),
    'pixtral': ('pixtral', {}),
    'qwen': ('qwen2_5_vl', {}),
    'qwen_omni': ('qwen2_5_omni', {}),
}


def test_every_family_with_a_tiny_checkpoint_has_an_encode_line():
    from swift_ext.testing.tiny import parents
    with_tiny = {family_of(parent)[0].name for parent in parents()}
    assert set(TINY_ENCODES) == with_tiny
    for name, (parent, _) in TINY_ENCODES.items():
        assert family_of(parent)[0].name == name


@pytest.mark.parametrize('name', sorted(TINY_ENCODES))
def test_geo_template_encodes_as_its_parent_and_records_every_image(tiny_processor, sample_images, name):
    # The _geo template's encode is its parent's, key for key and byte for byte, and each image's geometry
    # is recorded from its real (original) size.
    from PIL import Image

    import swift_ext.plugin  # noqa: F401  (registers the templates)
    from swift_ext.images import image_key
    from swift_ext.store import STORE
    from swift_ext.testing import contract
    parent, row = TINY_ENCODES[name]
    proc = tiny_processor(parent)
    groups = [[sample_images[n] for n in names] for names in (['landscape'], ['tiny', 'portrait'])]
    contract.assert_encodes_as_parent(proc, parent, groups, lambda paths: contract.sample(paths, **row))
    for path in groups[0] + groups[1]:
        recorded = STORE.get(image_key(path), (None, None), parent + '_geo')
        assert recorded is not None, (name, path)
        assert (recorded.original_width, recorded.original_height) == Image.open(path).size
