"""MiniCPM-V 2.6 / 4.0 / 4.5 and MiniCPM-o 2.6 / 4.5: the family's prediction equals OpenBMB's published
slicing code (vendored in tests/data/minicpmv2_6) for thousands of sizes, `_geo` encodes through ms-swift's real
templates and tiny checkpoints shipping that code are byte-identical to the parents', and the recorded geometry
is what the processor produced."""
import dataclasses
import importlib.util
import json
import math
import os

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named, family_of
from swift_ext.families.minicpmv2_6 import image_views
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.store import STORE, row_limits_key
from swift_ext.testing import contract

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data', 'minicpmv2_6')
PARENTS = ['minicpmv2_6', 'minicpmv4', 'minicpmv4_5', 'minicpmo', 'minicpmo4_5']
MODEL_TYPES = {'minicpmv2_6': 'minicpmv2_6', 'minicpmv4': 'minicpmv4', 'minicpmv4_5': 'minicpmv4_5',
               'minicpmo': 'minicpmo', 'minicpmo4_5': 'minicpmo'}
SIZES = [(640, 480), (50, 60), (300, 2000), (2000, 90), (448, 448), (1280, 960)]


@pytest.fixture(scope='module')
def reference():
    """OpenBMB's MiniCPMVImageProcessor from the vendored file, with the published preprocessor_config.json."""
    spec = importlib.util.spec_from_file_location('openbmb_processing_minicpmo',
                                                  os.path.join(DATA, 'processing_minicpmo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(os.path.join(DATA, 'preprocessor_config.json')) as f:
        config = {k: v for k, v in json.load(f).items() if k != 'auto_map'}
    return module.MiniCPMVImageProcessor(**config)


@pytest.fixture(scope='module')
def processors(tiny_processor):
    return {p: tiny_processor(p) for p in PARENTS}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('minicpmv2_6_images'), SIZES, boxed=True)


def _settings(parent='minicpmv2_6', **overrides):
    return family_named('minicpmv2_6').settings_for(parent, env={}, overrides=overrides)


def _reference_geometry(ip, w, h, max_slice_nums):
    """(grid, source (w, h), refine (w, h) or None, visual tokens) as OpenBMB's methods and placeholder give them."""
    grid = ip.get_sliced_grid((w, h), max_slice_nums)
    source = ip.find_best_resize((w, h), ip.scale_resolution, ip.patch_size, allow_upscale=grid is None)
    refine = ip.get_refine_size((w, h), grid, ip.scale_resolution, ip.patch_size, allow_upscale=True) if grid else None
    text = ip.get_slice_image_placeholder((w, h), image_idx=0, max_slice_nums=max_slice_nums, use_image_id=True)
    return grid, tuple(source), refine and tuple(refine), text.count(ip.unk_token)


@pytest.mark.parametrize('max_slice_nums', [1, 2, 3, 4, 9, 16])
def test_predict_matches_published_code(reference, max_slice_nums):
    # 1,500 sizes per setting (9,000 in all): grid, source size, refine size and placeholder tokens.
    settings = _settings(max_slice_nums=max_slice_nums)
    mismatches = []
    for w, h in contract.slice_sizes(1500, seed=max_slice_nums * 13):
        geo, _ = settings.predict(width=w, height=h)
        grid, (src_w, src_h), refine, tokens = _reference_geometry(reference, w, h, max_slice_nums)
        if grid is None:
            got = (geo.tile_cols, geo.resized_width, geo.resized_height, geo.num_tiles)
            want = (None, src_w, src_h, 1)
        else:
            got = ((geo.tile_cols, geo.tile_rows), geo.resized_width, geo.resized_height, geo.num_tiles,
                   geo.global_width, geo.global_height)
            want = (tuple(grid), *refine, grid[0] * grid[1] + 1, src_w, src_h)
        if got != want or geo.num_tokens != tokens:
            mismatches.append(((w, h), got, want, geo.num_tokens, tokens))
    assert mismatches == []


@pytest.mark.parametrize('size', SIZES + [(1, 2), (3, 1000), (14, 3000), (4000, 3000)])
def test_predict_matches_full_image_processor(reference, size):
    # The published preprocess on real pixels: per-view target sizes, source view first, slices row-major.
    out = reference.preprocess([Image.new('RGB', size)], return_tensors='pt')
    sizes = out['tgt_sizes'][0].tolist()
    geo, _ = _settings().predict(width=size[0], height=size[1])
    assert len(sizes) == geo.num_tiles and geo.num_tokens == 64 * len(sizes)
    if geo.tile_rows:
        assert (geo.global_height, geo.global_width) == (sizes[0][0] * 14, sizes[0][1] * 14)
        assert sizes[1:] == [[geo.resized_height // 14 // geo.tile_rows, geo.resized_width // 14 // geo.tile_cols]] * (
            geo.num_tiles - 1)
    else:
        assert (geo.resized_height, geo.resized_width) == (sizes[0][0] * 14, sizes[0][1] * 14)


@pytest.mark.parametrize('size,clamp', [
    ((30, 30), Clamp.UPSCALE),  # one view scaled up to about 448x448
    ((448, 448), None),
    ((640, 480), Clamp.UPSCALE),  # two slices, each scaled up to about 448x448
    ((4000, 3000), Clamp.CANVAS_FIT),  # nine slices of about 448x448: shrunk
    ((411, 956), Clamp.CANVAS_FIT),  # 1 col x 2 rows of 420x476: width grows, height shrinks
])
def test_clamp_names_what_the_processor_did(reference, size, clamp):
    grid, source, refine, _ = _reference_geometry(reference, *size, 9)
    real_w, real_h = refine or source
    geo, clamped = _settings().predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == (real_w, real_h) and clamped == clamp
    assert (clamped == Clamp.UPSCALE) == (real_w >= size[0] and real_h >= size[1] and (real_w, real_h) != size)


def test_max_slice_nums_below_one_is_refused_as_the_processor_refuses(reference, processors, images):
    with pytest.raises(AssertionError):  # get_sliced_images: `assert max_slice_nums > 0`
        reference.preprocess([Image.new('RGB', (640, 480))], max_slice_nums=0)
    with pytest.raises(GeometryError, match=r'MAX_SLICE_NUMS.*at least 1, got 0'):
        _settings(max_slice_nums=0).predict(width=640, height=480, name='a.png')
    with pytest.raises(AssertionError):  # ms-swift's encode refuses it the same way
        tpl = contract.template(processors['minicpmv2_6'], 'minicpmv2_6')
        tpl.max_slice_nums = 0
        tpl.encode(contract.sample([images[(640, 480)]]))


def test_first_image_one_or_three_pixels_high_is_the_processors_own_failure(reference, processors, tmp_path):
    # transformers reads the channel axis of every image in a sample from the first one: an array 1 or 3 rows
    # high looks channels-first, and normalising the slices then fails. Only the sample's first image counts,
    # so no size alone is refused: the prediction gives a geometry, the encode raises ms-swift's own error.
    for size in ((500, 3), (7, 1)):
        with pytest.raises(ValueError, match='mean must have'):
            reference.preprocess([Image.new('RGB', size)])
        assert _settings().predict(width=size[0], height=size[1])[0].num_tokens == 64
    thin, wide = str(tmp_path / 'thin.png'), str(tmp_path / 'wide.png')
    Image.new('RGB', (500, 3)).save(thin)
    Image.new('RGB', (640, 480)).save(wide)
    tpl = contract.template(processors['minicpmv2_6'], 'minicpmv2_6_geo')
    with pytest.raises(ValueError, match='mean must have'):
        tpl.encode(contract.sample([thin, wide]))
    encoded = tpl.encode(contract.sample([wide, thin]))  # second: encodes, as predicted
    assert STORE.get(image_key(thin), (None, None), 'minicpmv2_6_geo') == _settings().predict(width=500, height=3)[0]
    assert len(encoded['tgt_sizes'][0]) == 3 + 1


@pytest.mark.parametrize('parent', PARENTS)
def test_encode_identical_to_parent(processors, images, parent):
    # Same input_ids, labels, image bounds, pixel values, target sizes (4.5: temporal ids), 1-3 images.
    groups = ([(640, 480)], [(50, 60), (300, 2000)], [(2000, 90), (448, 448), (1280, 960)])
    contract.assert_encodes_as_parent(processors[parent], parent, [[images[s] for s in g] for g in groups])


@pytest.mark.parametrize('parent', PARENTS)
def test_recorded_geometry_is_prediction_and_processor(processors, images, parent):
    proc = processors[parent]
    tpl = contract.template(proc, parent + '_geo')
    paths = [images[s] for s in SIZES]
    encoded = tpl.encode(contract.sample(paths))
    tok = proc.tokenizer
    views = image_views(encoded['input_ids'], unk=tok.convert_tokens_to_ids('<unk>'),
                        image_start=tok.convert_tokens_to_ids('<image>'),
                        slice_start=tok.convert_tokens_to_ids('<slice>'),
                        slice_end=tok.convert_tokens_to_ids('</slice>'))
    real = proc.image_processor([[Image.open(p).convert('RGB') for p in paths]], return_tensors='pt')
    all_sizes, first = real['tgt_sizes'][0].tolist(), 0
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), parent + '_geo')
        predicted, _ = tpl.geo_settings().predict(width=SIZES[i][0], height=SIZES[i][1])
        assert geo == predicted, path
        grid = proc.image_processor.get_sliced_grid(SIZES[i], 9)
        cols, rows = grid or (0, 0)
        n = 1 + cols * rows
        assert geo.num_tokens == views[i][0] == 64 * n and geo.num_tiles == n
        assert (geo.tile_cols or 0, geo.tile_rows or 0) == (cols, rows) and views[i][1] == [cols] * rows
        sizes = all_sizes[first:first + n]
        first += n
        assert [geo.global_height or geo.resized_height, geo.global_width or geo.resized_width] == [
            v * 14 for v in sizes[0]]
    assert encoded['tgt_sizes'][0].tolist() == all_sizes


def test_environment_reaches_settings_and_encode(processors, images, monkeypatch):
    # MAX_SLICE_NUMS is read by ms-swift when the template is built; unset, the processor's own 9 applies.
    assert contract.template(processors['minicpmv2_6'], 'minicpmv2_6_geo').geo_settings().max_slice_nums == 9
    monkeypatch.setenv('MAX_SLICE_NUMS', '2')
    tpl = contract.template(processors['minicpmv2_6'], 'minicpmv2_6_geo')
    settings = tpl.geo_settings()
    assert settings.max_slice_nums == 2
    env_settings = family_named('minicpmv2_6').settings_for('minicpmv2_6', env={'MAX_SLICE_NUMS': '2'})
    assert dataclasses.replace(env_settings, versions=settings.versions) == settings
    path = images[(1280, 960)]
    encoded = tpl.encode(contract.sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'minicpmv2_6_geo')
    assert geo.num_tiles == 3 and (geo.tile_cols, geo.tile_rows) == (2, 1)
    assert len(encoded['tgt_sizes'][0]) == 3 and geo.num_tokens == 64 * 3


def test_swift_max_pixels_rescales_first(processors, images):
    tpl = contract.template(processors['minicpmv2_6'], 'minicpmv2_6_geo', max_pixels=50176)
    path = images[(1280, 960)]
    encoded = tpl.encode(contract.sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'minicpmv2_6_geo')
    # 258x193 is below 448**2: no slices, the source upscaled to ~448**2.
    assert int(math.sqrt(50176 / (1280 / 960)) * 1280 / 960) == 258
    assert (geo.original_width, geo.num_tiles) == (1280, 1)
    assert geo == tpl.geo_settings().predict(width=1280, height=960)[0]
    assert [[geo.resized_height // 14, geo.resized_width // 14]] == encoded['tgt_sizes'][0].tolist()


def test_row_max_pixels_rescales_first(processors, images):
    # A row's chat_template_kwargs max_pixels is ms-swift's pre-rescale for these templates too.
    tpl = contract.template(processors['minicpmv4_5'], 'minicpmv4_5_geo')
    path = images[(1280, 960)]
    sample = {**contract.sample([path]), 'chat_template_kwargs': {'max_pixels': 50176}}
    encoded = tpl.encode(sample)
    geo = STORE.get(image_key(path), row_limits_key(sample['chat_template_kwargs']), 'minicpmv4_5_geo')
    want, clamp = tpl.geo_settings().predict(width=1280, height=960, row_kwargs={'max_pixels': 50176})
    assert clamp == Clamp.MAX_PIXELS and want.num_tiles == 1
    assert [[want.resized_height // 14, want.resized_width // 14]] == encoded['tgt_sizes'][0].tolist()
    assert geo == want


def test_image_views_reads_rows_and_skips_other_runs():
    # <image> src </image> then rows of slices: `</slice><slice>` joins a row, anything else breaks it; a run
    # opened by anything else (MiniCPM-o's <|audio_start|>, a literal <unk>) is no image's.
    U, IM, S, E, NL, X, A = 9, 1, 2, 3, 7, 8, 5
    ids = [X, IM, U, U, 4, S, U, E, S, U, E, NL, S, U, E, S, U, E, A, U, U, 6, X, IM, U, 4, X, U]
    assert image_views(ids, unk=U, image_start=IM, slice_start=S, slice_end=E) == [(6, [2, 2]), (1, [])]


def test_every_template_is_encode_verified_without_trained_boxes():
    # OpenBMB documents no box output for these checkpoints: geo_iou only scores in a convention the user names.
    for parent in PARENTS:
        family, spec = family_of(parent)
        assert family.name == 'minicpmv2_6' and spec.verification == 'encode' and spec.boxes_trained is False
        assert spec.model_type == MODEL_TYPES[parent] and 'no grounding output documented' in spec.coords_source



@pytest.mark.parametrize('parent', PARENTS)
def test_tiny_checkpoint_ships_the_published_processor(tiny_model, processors, parent):
    # The checkpoint's processor code is the vendored file byte for byte, with the published numbers.
    model_dir = tiny_model(parent)
    with open(os.path.join(DATA, 'processing_minicpmo.py'), 'rb') as a, \
            open(os.path.join(model_dir, 'processing_minicpmo.py'), 'rb') as b:
        assert a.read() == b.read()
    assert sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir)) < 10 * 1024 * 1024
    ip = processors[parent].image_processor
    assert (ip.max_slice_nums, ip.scale_resolution, ip.patch_size, ip.image_feature_size, ip.use_image_id,
            ip.slice_mode) == (9, 448, 14, 64, True, True)


@pytest.mark.parametrize('parent', ['minicpmv4', 'minicpmo'])  # the other three train in tests/e2e
def test_tiny_model_takes_the_encode(tiny_model, images, parent):
    # ms-swift's template, collator and post-encode hook feed the stand-in model to finite logits over a
    # 2-sample batch (9 views in all): processor, placeholders and model agree.
    from swift.model import get_model_processor
    model, proc = get_model_processor(tiny_model(parent), model_type=MODEL_TYPES[parent], torch_dtype=torch.float32)
    tpl = contract.template(proc, parent + '_geo')
    tpl.model = model
    batch = tpl.data_collator([tpl.encode(contract.sample([images[(640, 480)]])),
                               tpl.encode(contract.sample([images[(50, 60)], images[(300, 2000)]]))])
    tpl.register_post_encode_hook([model])
    try:
        with torch.no_grad():
            logits = model(**batch).logits
    finally:
        tpl.remove_post_encode_hook()
    assert logits.shape[:2] == batch['input_ids'].shape and torch.isfinite(logits).all()
