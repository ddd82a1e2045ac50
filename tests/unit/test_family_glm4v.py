"""GLM-4.1V / 4.5V / GLM-5.3-Flash geometry, pinned to transformers' own resize code over thousands
of sizes, and to real encodes (tiny GLM-4.1V checkpoint) whose recorded geometry is what the
processor produced."""
import functools
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.boxes import box_style, is_well_formed, parse_boxes
from swift_ext.families.glm4v import (
    GLM_MAX_PIXELS,
    GLM_MIN_PIXELS,
    Glm4v,
    glm4v_smart_resize,
    glm5_next_canvas,
    glm5_next_content,
)
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, answer='<|begin_of_box|>[1,2,3,4]<|end_of_box|>')

GLM_LIMITS = [  # (shortest_edge, longest_edge) of the processor's `size`
    (12544, 9633792),  # GLM-4.1V-9B-Thinking / GLM-4.6V-Flash preprocessor_config.json
    (12544, 28 * 28 * 15000),  # Glm4vImageProcessor's class default
    (112 * 112, 2 * 50176),  # a small cap: most sizes take the downscale branch
    (2 * 200704, 9633792),  # a large floor: most sizes take the upscale branch
]


def _ours(fn, **kwargs):
    try:
        return fn(**kwargs)[0]
    except GeometryError:
        return 'refused'


def _theirs(fn, *args, **kwargs):
    try:
        h, w = fn(*args, **kwargs)
        return (w, h)
    except ValueError:
        return 'refused'


# ---------------------------------------------------------------- parity, thousands of sizes
@pytest.mark.parametrize('min_pixels,max_pixels', GLM_LIMITS)
def test_glm4v_smart_resize_parity(min_pixels, max_pixels):
    from transformers.models.glm4v.image_processing_glm4v import smart_resize
    sizes = contract.mixed_sizes(min_pixels + max_pixels, 1500)
    mismatches, outcomes = contract.resize_parity(
        sizes, lambda w, h: glm4v_smart_resize(width=w, height=h, min_pixels=min_pixels, max_pixels=max_pixels),
        lambda w, h: _theirs(smart_resize, num_frames=2, height=h, width=w, temporal_factor=2, factor=28,
                             min_pixels=min_pixels, max_pixels=max_pixels))
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:5]}'
    # Every branch was exercised on the real-checkpoint limits.
    if (min_pixels, max_pixels) == GLM_LIMITS[0]:
        assert outcomes == {None, 'max_pixels', 'min_pixels', 'upscale', 'refused'}


@pytest.mark.parametrize('size,clamp', [
    ((640, 480), None),
    ((30, 30), Clamp.MIN_PIXELS),  # grown to the 112*112/2 floor
    ((20, 3000), Clamp.UPSCALE),  # its 20-pixel side scaled up to 28 (28x4200), inside both limits
    ((4000, 3000), Clamp.MAX_PIXELS),
])
def test_glm4v_clamp_names_what_the_resize_did(size, clamp):
    from transformers.models.glm4v.image_processing_glm4v import smart_resize
    real = _theirs(smart_resize, num_frames=2, height=size[1], width=size[0], temporal_factor=2, factor=28,
                   min_pixels=GLM_MIN_PIXELS, max_pixels=GLM_MAX_PIXELS)
    geo, clamped = default_settings('glm4v_geo').predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == real and clamped == clamp
    if clamp == Clamp.UPSCALE:
        assert real[0] >= size[0] and real[1] >= size[1]


def test_glm4v_token_count_parity_with_the_processor():
    # predict's tokens == the processor's own get_number_of_image_patches // merge**2.
    import transformers as tf
    ip = tf.Glm4vImageProcessor(size={'shortest_edge': 12544, 'longest_edge': 9633792})
    settings = default_settings('glm4v_geo')
    assert contract.assert_token_parity(ip, settings, contract.mixed_sizes(7, 2000)) > 1500


@pytest.mark.parametrize('min_tokens,max_tokens', [(16, 8000), (64, 1024), (4, 200)])
def test_glm5_next_canvas_parity(min_tokens, max_tokens):
    from transformers.models.glm5_next.image_processing_glm5_next import smart_resize
    sizes = contract.mixed_sizes(max_tokens, 1500)
    mismatches = [((w, h), ours, theirs) for w, h in sizes
                  for ours, theirs in [(_ours(glm5_next_canvas, width=w, height=h, min_tokens=min_tokens,
                                              max_tokens=max_tokens),
                                        _theirs(smart_resize, num_frames=2, height=h, width=w, temporal_factor=2,
                                                factor=28, min_pixels=min_tokens, max_pixels=max_tokens))]
                  if ours != theirs]
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:5]}'


def test_glm5_next_content_matches_the_real_resize():
    # The content size is decided inside Glm5NextImageProcessor.resize (no pure function): run
    # it on flat images and measure the non-padding region it leaves.
    import transformers as tf
    ip = tf.Glm5NextImageProcessor()
    rng = random.Random(3)
    sizes = [(rng.randint(1, 300), rng.randint(1, 300)) for _ in range(150)] + [(400, 20), (20, 400), (1, 1)]
    for w, h in sizes:
        image = torch.full((1, 3, h, w), 200, dtype=torch.uint8)
        out = ip.resize(image, resample=ip.resample, factor=28, temporal_factor=2, min_image_tokens=16,
                        max_image_tokens=64)
        mask = out[0, 0] > 0
        measured = (int(mask.any(0).sum()), int(mask.any(1).sum()))
        (cw, ch), _ = glm5_next_canvas(width=w, height=h, min_tokens=16, max_tokens=64)
        assert (out.shape[-1], out.shape[-2]) == (cw, ch), (w, h)
        assert glm5_next_content(width=w, height=h, canvas_width=cw, canvas_height=ch, min_tokens=16) == measured, \
            (w, h)


# ------------------------------------------------------------------- prediction details
def test_predict_applies_swift_prerescale_first():
    settings = default_settings('glm4v_geo', swift_max_pixels=50176)
    geo, clamped = settings.predict(width=1280, height=960)
    # ms-swift's rescale_image: 1280x960 -> 258x193, then GLM's rounding to 28s.
    assert (geo.original_width, geo.resized_width, geo.resized_height, clamped) == (1280, 252, 196, Clamp.MAX_PIXELS)
    row, _ = default_settings('glm4v_geo').predict(width=1280, height=960, row_kwargs={'max_pixels': 50176})
    assert (row.resized_width, row.resized_height) == (252, 196)


def test_refusals_name_the_image_and_rule():
    settings = default_settings('glm4v_geo')
    with pytest.raises(GeometryError, match=r'thin.png: GLM-4.1V refuses an aspect ratio over 200, got 250.0'):
        settings.predict(width=2, height=500, name='thin.png')
    with pytest.raises(GeometryError, match='chat_template_kwargs `max_pixels` must be a number'):
        settings.predict(width=20, height=20, row_kwargs={'max_pixels': 'big'})


def test_glm_box_style():
    text = '<think>maybe [1,2,3,4]</think>The cat: <|begin_of_box|>[120, 80, 560, 710]<|end_of_box|>'
    assert parse_boxes(text) == [[120.0, 80.0, 560.0, 710.0]]
    assert box_style(text) == 'glm_box'
    assert parse_boxes('<|begin_of_box|>[[1,2,3,4],[5,6,7,8]]<|end_of_box|>') == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert is_well_formed(text, Glm4v.spec('glm4v').box_styles)
    assert not is_well_formed(text, ('internvl_box',))
    # Unclosed tags cost one pass: 20,000 of them parse quickly and yield no box.
    assert parse_boxes('<|begin_of_box|>[1, 2, 3' * 20000) == []
    assert box_style('<|begin_of_box|>[1, 2, 3, 4]') == 'bare_list'  # unclosed: read as a bare list


# ----------------------------------------------------------------------- real encodes
SIZES = [(640, 480), (20, 30), (1000, 40), (300, 500), (5, 900)]


@pytest.fixture(scope='module')
def glm(tiny_processor):
    return tiny_processor('glm4v')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('glm_images'), SIZES + [(2, 500), (1280, 960)], (200, 30, 30))


def _check_recorded(tpl_name, encoded, paths, settings, image_token):
    ids = encoded['input_ids']
    runs = [len(r) for r in ''.join('x' if t == image_token else ' ' for t in ids).split()]
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), tpl_name)
        w, h = Image.open(path).size
        predicted, _ = settings.predict(width=w, height=h, name=path)
        t, gh, gw = encoded['image_grid_thw'][i].tolist()
        assert (geo.original_width, geo.original_height) == (w, h)
        assert geo.grid == (t, gh, gw) == predicted.grid
        assert geo.num_tokens == runs[i] == t * gh * gw // 4 == predicted.num_tokens
        if settings.resize_rule == 'glm5_next':
            assert dict(geo.extra) == {'canvas_width': gw * 14, 'canvas_height': gh * 14} == dict(predicted.extra)
            assert (geo.resized_width, geo.resized_height) == (predicted.resized_width, predicted.resized_height)
        else:
            assert (geo.resized_width, geo.resized_height) == (gw * 14, gh * 14)
            assert (predicted.resized_width, predicted.resized_height) == (gw * 14, gh * 14)


@pytest.mark.parametrize('parent', ['glm4v', 'glm4_5v'])
def test_encode_identical_and_geometry_recorded(glm, images, parent):
    parent_tpl, geo_tpl = contract.template(glm, parent), contract.template(glm, parent + '_geo')
    image_token = glm.tokenizer.convert_tokens_to_ids('<|image|>')
    assert glm.tokenizer.convert_tokens_to_ids(['<|begin_of_image|>', '<|end_of_image|>']) == [151339, 151340]
    for group in ([SIZES[0]], SIZES[1:3], SIZES[3:]):
        paths = [images[s] for s in group]
        a, b = parent_tpl.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(a, b)
        _check_recorded(parent + '_geo', b, paths, geo_tpl.geo_settings(), image_token)


def test_refused_image_is_refused_by_both(glm, images):
    path = images[(2, 500)]
    for name in ('glm4v', 'glm4v_geo'):
        with pytest.raises(ValueError, match='aspect ratio'):
            contract.template(glm, name).encode(_sample([path]))


def test_settings_come_from_the_live_processor(tiny_model, images):
    # A checkpoint whose processor has other limits: the settings and the geometry follow it.
    from swift.model import get_processor
    proc = get_processor(tiny_model('glm4v'), model_type='glm4v')
    proc.image_processor.size = {'shortest_edge': 12544, 'longest_edge': 2 * 50176}
    tpl = contract.template(proc, 'glm4v_geo')
    settings = tpl.geo_settings()
    assert (settings.min_pixels, settings.max_pixels) == (12544, 100352)
    path = images[(1280, 960)]
    encoded = tpl.encode(_sample([path]))
    _check_recorded('glm4v_geo', encoded, [path], settings, proc.tokenizer.convert_tokens_to_ids('<|image|>'))
    geo = STORE.get(image_key(path), (None, None), 'glm4v_geo')
    assert (geo.resized_width, geo.resized_height) == (252, 168)  # the default limits give 1288x952


def test_glm5_next_encode(glm, images):
    # No tiny GLM-5.3-Flash model: the real Glm5NextProcessor around the tiny GLM tokenizer.
    import transformers as tf
    tok = glm.tokenizer
    proc = tf.Glm5NextProcessor(image_processor=tf.Glm5NextImageProcessor(max_image_tokens=256),
                                video_processor=tf.Glm5NextVideoProcessor(), tokenizer=tok)
    proc.model_info, proc.model_meta = glm.model_info, glm.model_meta
    parent_tpl, geo_tpl = contract.template(proc, 'glm5_next'), contract.template(proc, 'glm5_next_geo')
    settings = geo_tpl.geo_settings()
    assert (settings.resize_rule, settings.min_image_tokens, settings.max_image_tokens) == ('glm5_next', 16, 256)
    paths = [images[s] for s in SIZES[:3]] + [images[(1280, 960)]]
    a, b = parent_tpl.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
    contract.assert_same_encode(a, b)
    _check_recorded('glm5_next_geo', b, paths, settings, tok.convert_tokens_to_ids('<|image|>'))
    big = STORE.get(image_key(images[(1280, 960)]), (None, None), 'glm5_next_geo')
    assert big.num_tokens <= 256 and big.resized_width <= dict(big.extra)['canvas_width']


# ------------------------------------------------------------------------------ GLM-OCR
def test_glm_ocr_resize_is_glm46v_smart_resize():
    # GLM-OCR's Glm46VImageProcessor has its own smart_resize: the same arithmetic, pinned over its limits.
    from transformers.models.glm46v.image_processing_glm46v import smart_resize
    sizes = contract.mixed_sizes(46, 2000)
    mismatches = [((w, h), _ours(glm4v_smart_resize, width=w, height=h), theirs)
                  for w, h in sizes
                  if _ours(glm4v_smart_resize, width=w, height=h) != (theirs := _theirs(
                      smart_resize, num_frames=2, height=h, width=w, temporal_factor=2, factor=28,
                      min_pixels=GLM_MIN_PIXELS, max_pixels=GLM_MAX_PIXELS))]
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:5]}'


@pytest.fixture(scope='module')
def glm_ocr(tiny_processor):
    return tiny_processor('glm_ocr')


def test_glm_ocr_encode_identical_and_geometry_recorded(glm_ocr, images):
    import transformers as tf
    assert isinstance(glm_ocr.image_processor, tf.Glm46VImageProcessor)
    parent_tpl, geo_tpl = contract.template(glm_ocr, 'glm_ocr'), contract.template(glm_ocr, 'glm_ocr_geo')
    settings = geo_tpl.geo_settings()
    assert (settings.min_pixels, settings.max_pixels) == (GLM_MIN_PIXELS, GLM_MAX_PIXELS)
    assert settings == default_settings('glm_ocr_geo', versions=settings.versions)
    image_token = glm_ocr.tokenizer.convert_tokens_to_ids('<|image|>')
    assert image_token == 59280  # GlmOcrConfig.image_token_id: the id the model scatters features into
    for group in ([SIZES[0]], SIZES[1:3], SIZES[3:] + [(1280, 960)]):
        paths = [images[s] for s in group]
        a, b = parent_tpl.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(a, b)
        _check_recorded('glm_ocr_geo', b, paths, settings, image_token)
        # GLMOCRTemplate frames each run with its hard-coded 59256 / 59257.
        ids = b['input_ids']
        assert ids.count(59256) == ids.count(59257) == len(paths)
    with pytest.raises(ValueError, match='aspect ratio'):
        contract.template(glm_ocr, 'glm_ocr_geo').encode(_sample([images[(2, 500)]]))
    with pytest.raises(ValueError, match='aspect ratio'):
        parent_tpl.encode(_sample([images[(2, 500)]]))
