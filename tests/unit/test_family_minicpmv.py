"""MiniCPM-V 4.6 / 4.7: the family's prediction equals transformers' slicing arithmetic for thousands
of sizes, `_geo` encodes are byte-identical to the parents', and the recorded geometry is what the
real processor produced."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named
from swift_ext.families.minicpmv import image_views
from swift_ext.geometry import Clamp
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract

PARENTS = ['minicpmv4_6', 'minicpmv4_7']
SIZES = [(640, 480), (50, 60), (300, 2000), (2000, 90), (448, 448), (1280, 960)]


@pytest.fixture(scope='module')
def processors(tiny_processor):
    return {p: tiny_processor(p) for p in PARENTS}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('minicpmv_images'), SIZES, boxed=True)


def _settings(parent='minicpmv4_6', **overrides):
    return family_named('minicpmv').settings_for(parent, env={}, overrides=overrides)


def _processor_tokens(processor, h, w, max_slice_nums, divisor):
    """Visual tokens of one image as the real processor's arithmetic and placeholder code give them."""
    ip = processor.image_processor
    grid = ip.get_sliced_grid((h, w), max_slice_nums, 448)
    src_h, src_w = ip.find_best_resize((h, w), 448, 14, allow_upscale=grid is None)
    sizes = [[src_h // 14, src_w // 14]]
    if grid is not None:
        ref_h, ref_w = ip.get_refine_size((h, w), grid, 448, 14, allow_upscale=True)
        sizes += [[ref_h // grid[0] // 14, ref_w // grid[1] // 14]] * (grid[0] * grid[1])
    text = processor.replace_image_token({'grids': [grid or [0, 0]], 'num_patches_per_image': [len(sizes)],
                                          'target_sizes': np.array(sizes)}, 0, image_token_divisor=divisor)
    return grid, (src_h, src_w), text.count(processor.image_token)


@pytest.mark.parametrize('max_slice_nums,mode', [(9, '16x'), (9, '4x'), (1, '16x'), (2, '16x'), (4, '16x'),
                                                  (16, '16x')])
def test_predict_matches_processor_arithmetic(processors, max_slice_nums, mode):
    # 1,500 sizes per setting (9,000 in all): grid, source size, refine size and tokens.
    processor = processors['minicpmv4_6']
    ip = processor.image_processor
    settings = _settings(max_slice_nums=max_slice_nums, downsample_mode=mode)
    mismatches = []
    for w, h in contract.slice_sizes(1500, seed=max_slice_nums * 7 + len(mode)):
        geo, _ = settings.predict(width=w, height=h)
        grid, (src_h, src_w), tokens = _processor_tokens(processor, h, w, max_slice_nums, 4 if mode == '4x' else 16)
        if grid is None:
            got = (geo.tile_rows, geo.resized_width, geo.resized_height, geo.num_tiles)
            want = (None, src_w, src_h, 1)
        else:
            ref_h, ref_w = ip.get_refine_size((h, w), grid, 448, 14, allow_upscale=True)
            got = ((geo.tile_rows, geo.tile_cols), geo.resized_width, geo.resized_height, geo.num_tiles,
                   geo.global_width, geo.global_height)
            want = (tuple(grid), ref_w, ref_h, grid[0] * grid[1] + 1, src_w, src_h)
        if got != want or geo.num_tokens != tokens:
            mismatches.append(((w, h), got, want, geo.num_tokens, tokens))
    assert mismatches == []


@pytest.mark.parametrize('size,clamp', [
    ((30, 30), Clamp.UPSCALE),  # one view scaled up to about 448x448
    ((448, 448), None),
    ((640, 480), Clamp.UPSCALE),  # two slices, each scaled up to about 448x448
    ((4000, 3000), Clamp.CANVAS_FIT),  # nine slices of about 448x448: shrunk
])
def test_clamp_names_what_the_processor_did(processors, size, clamp):
    processor = processors['minicpmv4_6']
    ip = processor.image_processor
    w, h = size
    grid, (src_h, src_w), _ = _processor_tokens(processor, h, w, 9, 16)
    real_h, real_w = ip.get_refine_size((h, w), grid, 448, 14, allow_upscale=True) if grid else (src_h, src_w)
    geo, clamped = _settings().predict(width=w, height=h)
    assert (geo.resized_width, geo.resized_height) == (real_w, real_h) and clamped == clamp
    assert (clamped == Clamp.UPSCALE) == (real_w >= w and real_h >= h and (real_w, real_h) != size)


@pytest.mark.parametrize('size', SIZES)
def test_predict_matches_full_image_processor(processors, size):
    # The real image processor on real pixels: grids and per-view target sizes.
    ip = processors['minicpmv4_6'].image_processor
    out = ip(Image.new('RGB', size), max_slice_nums=9, return_tensors='pt')
    geo, _ = _settings().predict(width=size[0], height=size[1])
    sizes = out['target_sizes'].tolist()
    rows, cols = out['grids'][0]
    assert len(sizes) == geo.num_tiles == (rows * cols + 1 if rows else 1)
    if rows:
        assert (geo.tile_rows, geo.tile_cols) == (rows, cols)
        assert (geo.global_height, geo.global_width) == (sizes[0][0] * 14, sizes[0][1] * 14)
        assert (geo.resized_height, geo.resized_width) == (sizes[1][0] * 14 * rows, sizes[1][1] * 14 * cols)
    else:
        assert (geo.resized_height, geo.resized_width) == (sizes[0][0] * 14, sizes[0][1] * 14)
    assert geo.num_tokens == sum(h * w for h, w in sizes) // 16


@pytest.mark.parametrize('parent', PARENTS)
def test_encode_identical_to_parent(processors, images, parent):
    # Same input_ids, labels, pixel values, target sizes (and 4.7's mm_token_type_ids), 1-3 images.
    groups = ([(640, 480)], [(50, 60), (300, 2000)], [(2000, 90), (448, 448), (1280, 960)])
    contract.assert_encodes_as_parent(processors[parent], parent, [[images[s] for s in g] for g in groups])


@pytest.mark.parametrize('parent', PARENTS)
def test_recorded_geometry_is_prediction_and_processor(processors, images, parent):
    proc = processors[parent]
    tpl = contract.template(proc, parent + '_geo')
    paths = [images[s] for s in SIZES]
    encoded = tpl.encode(contract.sample(paths))
    views = image_views(encoded['input_ids'], pad=proc.image_token_id,
                        image_start=proc.tokenizer.convert_tokens_to_ids('<image>'),
                        slice_start=proc.tokenizer.convert_tokens_to_ids('<slice>'),
                        slice_end=proc.tokenizer.convert_tokens_to_ids('</slice>'))
    real = proc.image_processor([Image.open(p).convert('RGB') for p in paths], max_slice_nums=9, return_tensors='pt')
    first = 0
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), parent + '_geo')
        predicted, _ = tpl.geo_settings().predict(width=SIZES[i][0], height=SIZES[i][1])
        assert geo == predicted, path
        rows, cols = real['grids'][i]
        n = real['num_patches_per_image'][i]
        sizes = real['target_sizes'][first:first + n].tolist()
        first += n
        assert geo.num_tokens == views[i][0] == sum(h * w for h, w in sizes) // 16
        assert (geo.tile_rows or 0, geo.tile_cols or 0) == (rows, cols)
        assert views[i][1] == [cols] * rows
    assert torch.equal(encoded['target_sizes'], real['target_sizes'])


def test_environment_reaches_settings_and_encode(processors, images, monkeypatch):
    # MAX_SLICE_NUMS / DOWNSAMPLE_MODE are read by ms-swift when the template is built.
    monkeypatch.setenv('MAX_SLICE_NUMS', '2')
    monkeypatch.setenv('DOWNSAMPLE_MODE', '4x')
    tpl = contract.template(processors['minicpmv4_6'], 'minicpmv4_6_geo')
    settings = tpl.geo_settings()
    assert (settings.max_slice_nums, settings.downsample_mode) == (2, '4x')
    env_settings = family_named('minicpmv').settings_for('minicpmv4_6', env={'MAX_SLICE_NUMS': '2',
                                                                             'DOWNSAMPLE_MODE': '4x'})
    assert dataclasses.replace(env_settings, versions=settings.versions) == settings
    path = images[(1280, 960)]
    encoded = tpl.encode(contract.sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'minicpmv4_6_geo')
    assert geo.num_tiles == 3 and (geo.tile_rows, geo.tile_cols) == (1, 2)
    assert geo.num_tokens == sum(h * w for h, w in encoded['target_sizes'].tolist()) // 4
    assert geo.num_tokens == sum(1 for t in encoded['input_ids'] if t == processors['minicpmv4_6'].image_token_id)


def test_swift_max_pixels_rescales_first(processors, images):
    tpl = contract.template(processors['minicpmv4_6'], 'minicpmv4_6_geo', max_pixels=50176)
    path = images[(1280, 960)]
    encoded = tpl.encode(contract.sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'minicpmv4_6_geo')
    w = int(math.sqrt(50176 / (1280 / 960)) * 1280 / 960)
    # 258x193 is below 448**2: no slices, the source upscaled to ~448**2.
    assert (geo.original_width, geo.num_tiles) == (1280, 1)
    assert geo == tpl.geo_settings().predict(width=1280, height=960)[0]
    assert [[geo.resized_height // 14, geo.resized_width // 14]] == encoded['target_sizes'].tolist()
    assert w == 258


def test_image_views_reads_rows_from_newlines():
    # <image> src </image> then rows of slices: `</slice><slice>` joins a row, anything else breaks it.
    P, IM, S, E, NL, X = 9, 1, 2, 3, 7, 8
    ids = [X, IM, P, P, 4, S, P, E, S, P, E, NL, S, P, E, S, P, E, X, IM, P, 4, X]
    assert image_views(ids, pad=P, image_start=IM, slice_start=S, slice_end=E) == [(6, [2, 2]), (1, [])]
