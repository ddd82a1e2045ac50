"""The shortcuts that keep a `_geo` encode within 1% of its parent give the same answers as the long way:
token runs proved from a hint, Pixtral grids and Idefics3 tiles found from runs, LLaVA-NeXT's view probe,
remembered predictions and image identities, and image records queued then written in batches."""
import json
import os
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import loglines, runlog, templates
from swift_ext.families.base import ImageEntry
from swift_ext.families.encoded import token_runs, token_spans
from swift_ext.families.gemma4 import patch_extents
from swift_ext.families.idefics3 import IMAGE_TOKEN_ID, image_tiles
from swift_ext.families.pixtral import image_token_grids
from swift_ext.geometry import GeometryError, ImageGeometry, updated
from swift_ext.recorder import recorder

TOK = 7


def loop_spans(ids, tok):
    """The plain token-by-token count, the reference."""
    spans, start = [], None
    for i, t in enumerate(list(ids) + [None]):
        if t == tok and start is None:
            start = i
        elif t != tok and start is not None:
            spans.append((start, i - start))
            start = None
    return spans


ids_strategy = st.lists(st.sampled_from([TOK, TOK, TOK, 1, 2]), max_size=80)


# --- token runs ---------------------------------------------------------------------------------
@settings(max_examples=3000, deadline=None)
@given(ids=ids_strategy, hint=st.one_of(st.none(), st.lists(st.integers(-1, 12), max_size=6)), data=st.data())
def test_token_spans_equal_the_loop_whatever_the_hint(ids, hint, data):
    # A hint right, wrong, too long, too short, negative: the answer is always the loop's.
    if data.draw(st.booleans()):
        hint = [n for _, n in loop_spans(ids, TOK)]  # the true runs: the proof path
        if hint and data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(hint) - 1))
            hint[i] += data.draw(st.sampled_from([-1, 1]))  # one run off by one
    assert token_spans(ids, TOK, hint) == loop_spans(ids, TOK)
    assert token_runs(ids, TOK, hint) == [n for _, n in loop_spans(ids, TOK)]


def test_token_runs_hint_cannot_hide_a_hole_paid_by_a_later_token():
    # Counts match (3 + 2 = 5 tokens) and every boundary looks right, but run 1 has a hole and a
    # stray token after the last run pays for it: the proof must refuse and count.
    ids = [TOK, 1, TOK, 2, TOK, TOK, 2, TOK]
    assert token_runs(ids, TOK, [3, 2]) == [1, 1, 2, 1]
    assert token_runs(torch.tensor(ids), TOK, [1, 1, 2, 1]) == [1, 1, 2, 1]  # a tensor too


# --- Pixtral grids --------------------------------------------------------------------------------
IMG, BRK, END = 10, 12, 13


def loop_grids(ids):
    """The token-by-token parser the span version replaced, the reference."""
    grids, rows, cols, run = [], 0, None, 0
    for tok in ids:
        if tok == IMG:
            run += 1
        elif tok in (BRK, END) and run:
            rows += 1
            cols = run if cols is None else cols
            run = 0
            if tok == END:
                grids.append((rows, cols))
                rows, cols = 0, None
        else:
            rows, cols, run = 0, None, 0
    return grids


@settings(max_examples=3000, deadline=None)
@given(ids=st.lists(st.sampled_from([IMG, IMG, IMG, BRK, END, 1]), max_size=60),
       hint=st.one_of(st.none(), st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=3)),
       data=st.data())
def test_pixtral_grids_equal_the_token_loop(ids, hint, data):
    if data.draw(st.booleans()):
        hint = loop_grids(ids)  # the true grids: the proof path
    assert image_token_grids(ids, IMG, BRK, END, hint) == loop_grids(ids)


def test_pixtral_grids_from_real_blocks():
    block = lambda rows, cols: ([IMG] * cols + [BRK]) * (rows - 1) + [IMG] * cols + [END]  # noqa: E731
    ids = [1] + block(3, 4) + [1, 1] + block(1, 2)
    assert image_token_grids(ids, IMG, BRK, END, [(3, 4), (1, 2)]) == [(3, 4), (1, 2)]
    assert image_token_grids(ids, IMG, BRK, END, [(2, 4), (1, 2)]) == [(3, 4), (1, 2)]  # a wrong hint
    # The hint's blocks are all there, but a stray [IMG] elsewhere (a broken third block) is not in it.
    stray = ids + [IMG, 1]
    assert image_token_grids(stray, IMG, BRK, END, [(3, 4), (1, 2)]) == loop_grids(stray) == [(3, 4), (1, 2)]
    broken = block(2, 2)[:-1] + [1] + ids  # a block cut short before the hinted ones
    assert image_token_grids(broken, IMG, BRK, END, [(3, 4), (1, 2)]) == loop_grids(broken)


# --- Idefics3 tiles ---------------------------------------------------------------------------------
def test_idefics3_tiles_same_with_any_hint():
    tags = {100: '<row_1_col_1>', 101: '<row_1_col_2>', 102: '<global-img>', 1: 'x'}
    decode = lambda ids: ''.join(tags.get(i, '') for i in ids)  # noqa: E731
    seq = [IMAGE_TOKEN_ID] * 4
    ids = [1, 100, *seq, 101, *seq, 102, *seq, 1, 102, *seq]
    want = [(3, 1, 2), (1, 0, 0)]
    for hint in (None, 4, 3, 5, 0):
        assert image_tiles(ids, decode=decode, seq_len=4, expected_views=hint) == want


# --- remembered results ---------------------------------------------------------------------------------
def test_updated_keeps_the_object_when_nothing_changes():
    geo = ImageGeometry(original_width=10, original_height=10, resized_width=28, resized_height=28, num_tokens=1)
    assert updated(geo, num_tokens=1, resized_width=28) is geo
    changed = updated(geo, num_tokens=2)
    assert changed.num_tokens == 2 and changed is not geo and geo.num_tokens == 1


@pytest.fixture(scope='module')
def qwen_template(tiny_model):
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    proc = get_processor(tiny_model('qwen2_5_vl'), model_type=run_flags('qwen2_5_vl')['model_type'])
    tpl = get_template(proc, template_type='qwen2_5_vl_geo')
    tpl.set_mode('train')
    return tpl


def _entry(size, name='a.png'):
    return ImageEntry(key='/x/' + name, name=name, size=size)


def test_remembered_prediction_is_the_prediction_and_refusals_repeat(qwen_template):
    tpl = qwen_template
    settings_ = tpl.geo_settings()
    rows = {'min_pixels': 1}
    limits = templates.row_limits_key(rows)
    [first], [clamped] = tpl._geo_predict_all([_entry((640, 480))], rows, limits)
    assert (first, clamped) == settings_.predict(width=640, height=480, row_kwargs=rows)
    assert tpl._geo_predict_all([_entry((640, 480))], rows, limits)[0][0] is first  # remembered
    # True == 1 as a dict key, but a bool limit is refused every time, naming the image.
    bad = {'min_pixels': True}
    for name in ('b.png', 'c.png'):
        with pytest.raises(GeometryError, match=name):
            tpl._geo_predict_all([_entry((640, 480), name)], bad, templates.row_limits_key(bad))


def test_memo_starts_over_with_new_settings(qwen_template):
    tpl = qwen_template
    tpl.geo_memo()['probe'] = 1
    old = tpl.max_pixels
    try:
        tpl.max_pixels = 50176
        assert 'probe' not in tpl.geo_memo()
        [geo], [clamped] = tpl._geo_predict_all([_entry((1280, 960))], {}, (None, None))
        assert clamped == 'max_pixels' and geo.resized_width * geo.resized_height <= 50176
    finally:
        tpl.max_pixels = old


def test_remembered_identity_only_for_files_it_cannot_change(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    templates._FOUND.clear()
    assert templates._classify_remembered('late.png').key == str(tmp_path / 'late.png')
    assert templates._FOUND == {}  # missing relative path: a later file or ROOT_IMAGE_DIR may change it
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'late.png').write_bytes(b'x')
    monkeypatch.setenv('ROOT_IMAGE_DIR', str(tmp_path / 'sub'))
    assert templates._classify_remembered('late.png').key == str(tmp_path / 'sub' / 'late.png')
    monkeypatch.chdir(tmp_path / 'sub')  # another working directory is another key
    (tmp_path / 'sub' / 'sub').mkdir()
    monkeypatch.setenv('ROOT_IMAGE_DIR', str(tmp_path / 'sub' / 'sub'))
    assert templates._classify_remembered('late.png').key == str(tmp_path / 'sub' / 'late.png')


def test_one_entry_serves_every_encode_of_a_resolved_file_at_its_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('ROOT_IMAGE_DIR', raising=False)
    templates._ENTRIES.clear()
    path = str(tmp_path / 'a.png')
    Image.new('RGB', (30, 20)).save(path)
    first, = templates._entries([path], [(30, 20)])
    assert (first.key, first.size, first.error) == (path, (30, 20), None)
    assert templates._entries([path], [(30, 20)])[0] is first  # frozen: shared, never changed in place
    other, = templates._entries([path], [(15, 10)])  # another opened size is another entry
    assert other is not first and other.size == (15, 10)
    # A relative name that is missing now may be found later (a new file, ROOT_IMAGE_DIR): never kept.
    missing, = templates._entries(['late.png'], [(5, 5)])
    assert missing.key == str(tmp_path / 'late.png') and len(templates._ENTRIES) == 2
    (tmp_path / 'sub').mkdir()
    Image.new('RGB', (5, 5)).save(tmp_path / 'sub' / 'late.png')
    monkeypatch.setenv('ROOT_IMAGE_DIR', str(tmp_path / 'sub'))
    assert templates._entries(['late.png'], [(5, 5)])[0].key == str(tmp_path / 'sub' / 'late.png')
    # Unknown sizes are read from the header, and an image whose header cannot be read keeps its error.
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    read, bad = templates._entries([path, str(tmp_path / 'bad.png')], [])
    assert read.size == (30, 20) and bad.size is None and bad.error is not None


# --- line rendering ------------------------------------------------------------------------------
GEO = ImageGeometry(original_width=640, original_height=480, resized_width=644, resized_height=476, num_tokens=391,
                    grid=(1, 34, 46))


def _lines(d):
    path = d / runlog.GEOMETRY_FILE
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _image_lines(name, images=((GEO, '/x/1.png', 0, None, None),), sample_id=None):
    return loglines.ImageLines(mode='train', template='t_geo', sample_id=sample_id or (lambda: name),
                             images=list(images), basis='encode', when=time.time())


def test_rendered_lines_are_the_image_line_fields_in_order():
    lines = _image_lines('s1')
    [rendered] = [json.loads(x) for x in lines.render(step=5, batch='b' * 16, row='r' * 16, encode=3).splitlines()]
    direct = loglines.image_line(geometry=GEO, key='/x/1.png', image_index=0, mode='train', template='t_geo',
                               clamped=None, mismatch=None, sample_id='s1', step=5, basis='encode', row='r' * 16,
                               batch='b' * 16, encode=3, when=lines.when)
    assert rendered == direct and list(rendered) == list(direct)  # the same fields in the same order
    # The same geometry object again: its JSON is reused, the rest is this line's.
    again = _image_lines('s3', [(GEO, '/x/3.png', 1, 'max_pixels', {'num_tokens': [1, 2]})])
    [second] = [json.loads(x) for x in again.render(step=None, batch=None, row=None, encode=4).splitlines()]
    assert second == {**direct, 'step': None, 'image': '/x/3.png', 'image_index': 1, 'sample_id': 's3',
                      'clamped': 'max_pixels', 'mismatch': {'num_tokens': [1, 2]}, 'row': None, 'batch': None,
                      'encode': 4, 'time': again.when}


def test_a_line_that_cannot_be_built_is_counted_not_raised(log_dir):
    before = runlog.lost_records()
    lines = _image_lines('x', sample_id=lambda: 1 / 0)
    recorder().defer(lambda: lines, ())
    recorder().flush()
    assert runlog.lost_records() == before + 1 and _lines(log_dir) == []


def gemma4_positions(cols, rows, max_patches):
    """``image_position_ids`` of one image as transformers' Gemma 4 processor builds them."""
    grid = torch.stack(torch.meshgrid(torch.arange(cols), torch.arange(rows), indexing='xy'), dim=-1).reshape(-1, 2)
    return torch.nn.functional.pad(grid, (0, 0, 0, max_patches - cols * rows), value=-1)


@settings(max_examples=3000, deadline=None)
@given(cols=st.integers(1, 40), rows=st.integers(1, 40), spare=st.integers(0, 30),
       hint=st.tuples(st.integers(0, 42), st.integers(0, 42)), right=st.booleans(), as_np=st.booleans())
def test_gemma4_patch_extents_equal_the_full_max_whatever_the_hint(cols, rows, spare, hint, right, as_np):
    positions = gemma4_positions(cols, rows, cols * rows + spare)
    if right:
        hint = (cols, rows)  # the probe path
    found = patch_extents(positions.numpy() if as_np else positions, *hint)
    assert found == tuple(int(v) + 1 for v in positions.amax(0)) == (cols, rows)


def test_gemma4_patch_extents_never_take_a_grid_of_the_same_count_for_the_expected_one():
    positions = gemma4_positions(3, 2, 10)
    assert patch_extents(positions, 2, 3) == (3, 2) == patch_extents(positions, 6, 1)


def test_collating_a_batch_writes_its_records(qwen_template, log_dir, sample_images):
    # In a dataloader worker the step's metrics need the batch's records before the step runs:
    # the template writes them when it collates the batch, in the process that encoded it.
    image = next(iter(sample_images.values()))
    encoded = qwen_template.encode({'messages': [{'role': 'user', 'content': '<image>Where?'},
                                                 {'role': 'assistant', 'content': '[1, 2, 3, 4]'}],
                                    'images': [image]})
    assert _lines(log_dir) == []
    qwen_template.data_collator([encoded])
    [rec] = _lines(log_dir)
    assert rec['image'] == os.path.abspath(image) and rec['mode'] == 'train'


@given(st.text(alphabet='/.a\\:~ ', max_size=12))
@settings(max_examples=300, deadline=None)
def test_isabs_shortcut_is_os_path_isabs(path):
    assert templates._isabs(path) == os.path.isabs(path)


def test_a_row_holds_images_by_any_image_key_of_either_side():
    tensor = torch.zeros(1)
    assert templates._has_images({'input_ids': [1], 'pixel_values': tensor})
    assert templates._has_images({'input_ids': [1], 'rejected_image_grid_thw': tensor})  # an rlhf pair's side
    assert not templates._has_images({'input_ids': [1], 'pixel_values': None, 'chosen_pixel_values': None})
    assert not templates._has_images({'input_ids': [1]}) and not templates._has_images([tensor])


def test_an_encodes_images_go_into_the_store_at_once_bounded_as_one_by_one():
    from swift_ext.store import GeometryStore
    geos = [ImageGeometry(original_width=w, original_height=10, resized_width=28, resized_height=28, num_tokens=1)
            for w in range(10, 15)]
    one_by_one, at_once = GeometryStore(max_entries=3), GeometryStore(max_entries=3)
    for start in (0, 2):
        items = [(geos[i], f'/img/{i % 4}.png', i) for i in range(start, start + 3)]
        for geo, key, _ in items:
            one_by_one.put(key, (None, None), 't', geo)
        at_once.put_all((None, None), 't', items)
    assert list(at_once._data.items()) == list(one_by_one._data.items())
    assert [k[0] for k in at_once._data] == ['/img/2.png', '/img/3.png', '/img/0.png']  # the newest three
    assert at_once._data[('/img/0.png', (None, None), 't')] is geos[4]  # the latest geometry of a key wins


@given(row=st.one_of(st.none(), st.text(max_size=20), st.just('6b7684f6-12')),
       batch=st.one_of(st.none(), st.text(max_size=20)),
       clamped=st.one_of(st.none(), st.sampled_from(['max_pixels', 'upscale']), st.text(max_size=8)))
@settings(max_examples=300, deadline=None)
def test_rendered_names_and_clamps_are_json_whatever_they_hold(row, batch, clamped):
    lines = _image_lines('s', [(GEO, '/x/1.png', 0, clamped, None)])
    [rendered] = [json.loads(x) for x in lines.render(step=1, batch=batch, row=row, encode=2).splitlines()]
    direct = loglines.image_line(geometry=GEO, key='/x/1.png', image_index=0, mode='train', template='t_geo',
                               clamped=clamped, mismatch=None, sample_id='s', step=1, basis='encode', row=row,
                               batch=batch, encode=2, when=lines.when)
    assert rendered == direct
