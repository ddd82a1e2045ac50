"""`swift-ext show`: the picture's tile lines, padding and token cells, and every printed number, equal the
geometry `settings_for(...).predict` gives for the file; bad inputs exit 2 with a sentence naming them,
never a traceback; `--out` never writes through a symlink.

Pictures are read back pixel by pixel: tile boundaries, token cells, padding and the global view are
drawn in colours (``pic.TILE_LINE`` ...) that the grey test images cannot contain, so counting runs
of a colour along a row counts the lines drawn.
"""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from swift_ext.cli import main as cli_main
from swift_ext.cli.show import picture as pic
from swift_ext.cli.show import view as show_view
from swift_ext.families import families, template_names
from swift_ext.geometry import ImageGeometry
from swift_ext.settings import settings_for

FAMILY_ENV = sorted({name for family in families().values() for name in family.env_vars})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No ms-swift variable from the caller's shell: each test sets the ones it means."""
    for name in FAMILY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def grey_image(tmp_path):
    """Factory: a ``width`` x ``height`` PNG in greys only (so no drawn colour can come from it)."""
    def make(width, height, name='sample.png'):
        image = Image.new('RGB', (width, height), (200, 200, 200))
        ImageDraw.Draw(image).rectangle((width // 5, height // 4, 3 * width // 5, 3 * height // 4),
                                        fill=(150, 150, 150))
        path = tmp_path / name
        image.save(path)
        return str(path)
    return make


def run(capsys, *args):
    """``swift-ext show ARGS`` through the real dispatcher: (exit status, stdout, stderr)."""
    rc = cli_main(['show', *args])
    out, err = capsys.readouterr()
    return rc, out, err


def parse_facts(text):
    """``{label: value}`` from the text output's ``label: value`` lines."""
    facts = {}
    for line in text.splitlines():
        if line.startswith('wrote '):
            continue
        label, value = line.split(':', 1)
        facts[label] = value.strip()
    return facts


def numbers(value):
    """The integers in a fact's value, in order ('2 x 2 of 336 x 336 (5 views)' -> [2, 2, 336, 336, 5])."""
    return [int(n) for n in re.findall(r'\d+', value)]


def predicted(template, path, **kwargs):
    settings = settings_for(template, **kwargs)
    width, height = Image.open(path).size
    geo, clamped = settings.predict(width=width, height=height, name=path)
    return settings, geo, clamped


def layout(template, path, **kwargs):
    """Where `show` put the frame and the global view for this file (the module's own layout)."""
    settings, geo, clamped = predicted(template, path, **kwargs)
    view = show_view.model_view(geo, settings)
    lines = show_view.facts(path, geo, settings, view, clamped)
    return view, pic.layout_for(view, lines), lines


def pixels(path):
    return np.asarray(Image.open(path).convert('RGB'))


def is_colour(picture, colour):
    """Boolean mask of the pixels of exactly ``colour``."""
    return np.all(picture == np.array(colour, dtype=picture.dtype), axis=-1)


def runs(line, colour):
    """Number of separate runs of ``colour`` along a 1-D line of RGB pixels."""
    hit = is_colour(line, colour).astype(int)
    return int(hit[0] + np.count_nonzero(np.diff(hit) == 1))


def lines_across(picture, box, colour, *, row_at, col_at):
    """(vertical lines met along row ``row_at``, horizontal lines met along column ``col_at``) in ``box``."""
    left, top, width, height = box
    region = picture[top:top + height, left:left + width]
    return runs(region[row_at], colour), runs(region[:, col_at], colour)


def count_colour(picture, colour, box=None):
    if box is not None:
        left, top, width, height = box
        picture = picture[top:top + height, left:left + width]
    return int(np.count_nonzero(is_colour(picture, colour)))


# --- one test per kind of family ------------------------------------------------------------------
class TestQwenSmartResize:
    """qwen2_5_vl: the resized image with one cell per visual token (2 x 2 patches of 14 px)."""

    def test_numbers_and_cells(self, capsys, grey_image, tmp_path):
        path = grey_image(200, 150)
        out = str(tmp_path / 'qwen.png')
        rc, text, err = run(capsys, path, '--template', 'qwen2_5_vl_geo', '--out', out)
        assert rc == 0, err
        _, geo, _ = predicted('qwen2_5_vl_geo', path)
        assert (geo.resized_width, geo.resized_height, geo.grid, geo.num_tokens) == (196, 140, (1, 10, 14), 35)
        facts = parse_facts(text)
        assert numbers(facts['original']) == [200, 150]
        assert numbers(facts['resized']) == [196, 140]
        assert facts['tiles'] == 'none (1 view)'
        # 7 x 5 cells of 28 px, from the patch grid 1 x 10 x 14 with merge 2.
        assert numbers(facts['token grid']) == [7, 5, 28, 28, 1, 10, 14, 14, 2]
        assert numbers(facts['visual tokens']) == [geo.num_tokens]

        view, lay, _ = layout('qwen2_5_vl_geo', path)
        assert lay.scale == 1 and lay.model[2:] == (196, 140)
        picture = pixels(out)
        vertical, horizontal = lines_across(picture, lay.model, pic.TOKEN_LINE, row_at=14, col_at=14)
        assert (vertical, horizontal) == (8, 6)  # cols + 1 and rows + 1, the frame's edges included
        assert (vertical - 1) * (horizontal - 1) == geo.num_tokens
        assert count_colour(picture, pic.TILE_LINE) == 0  # no tiles drawn
        assert lay.global_view is None and count_colour(picture, pic.GLOBAL_LINE) == 0


class TestInternvlTiling:
    """internvl2_5: the resized image cut into 448-pixel tiles, a thumbnail beside it."""

    def test_numbers_tiles_and_thumbnail(self, capsys, grey_image, tmp_path):
        path = grey_image(900, 300)
        out = str(tmp_path / 'internvl.png')
        rc, text, err = run(capsys, path, '--template', 'internvl2_5_geo', '--out', out)
        assert rc == 0, err
        _, geo, _ = predicted('internvl2_5_geo', path)
        assert (geo.tile_cols, geo.tile_rows, geo.num_tiles, geo.num_tokens) == (3, 1, 4, 1024)
        facts = parse_facts(text)
        assert numbers(facts['resized']) == [1344, 448]
        assert numbers(facts['tiles']) == [3, 1, 448, 448, 448, 448, 4]
        assert 'thumbnail' in facts['tiles']
        assert numbers(facts['visual tokens']) == [1024]

        view, lay, _ = layout('internvl2_5_geo', path)
        assert lay.scale == pytest.approx(pic.MAX_VIEW_SIDE / 1344)  # drawn smaller, to fit
        picture = pixels(out)
        tile = round(448 * lay.scale)
        vertical, horizontal = lines_across(picture, lay.model, pic.TILE_LINE, row_at=tile // 2, col_at=tile // 2)
        assert (vertical, horizontal) == (4, 2)
        # The thumbnail: a tile-sized view framed in GLOBAL_LINE, right of the tiles.
        gx, gy, gw, gh = lay.global_view
        assert (gw, gh) == (tile, tile) and gx > lay.model[0] + lay.model[2]
        assert runs(picture[gy + gh // 2, gx - 3:gx + gw + 3], pic.GLOBAL_LINE) == 2

    def test_max_num_from_the_environment(self, capsys, grey_image, tmp_path, monkeypatch):
        """MAX_NUM=2, as ms-swift reads it: two tiles, so three boundaries across."""
        monkeypatch.setenv('MAX_NUM', '2')
        path = grey_image(900, 300)
        out = str(tmp_path / 'internvl2.png')
        rc, text, err = run(capsys, path, '--template', 'internvl2_5_geo', '--out', out)
        assert rc == 0, err
        facts = parse_facts(text)
        assert numbers(facts['tiles'])[:2] == [2, 1] and facts['environment'] == 'MAX_NUM=2'
        _, lay, _ = layout('internvl2_5_geo', path)
        vertical, horizontal = lines_across(pixels(out), lay.model, pic.TILE_LINE, row_at=100, col_at=100)
        assert (vertical, horizontal) == (3, 2)


class TestLlavaNextCanvas:
    """llava1_6_mistral_hf: a 672 x 672 pinpoint canvas, the image padded top and bottom, 2 x 2 tiles."""

    def test_numbers_padding_and_tiles(self, capsys, grey_image, tmp_path):
        path = grey_image(1000, 600)
        out = str(tmp_path / 'llava.png')
        rc, text, err = run(capsys, path, '--template', 'llava1_6_mistral_hf_geo', '--out', out)
        assert rc == 0, err
        _, geo, _ = predicted('llava1_6_mistral_hf_geo', path)
        assert (geo.canvas_width, geo.canvas_height, geo.pad_left, geo.pad_top) == (672, 672, 0, 134)
        facts = parse_facts(text)
        assert numbers(facts['resized']) == [672, 404]
        assert numbers(facts['canvas']) == [672, 672, 0, 134]
        assert numbers(facts['pinpoint']) == [672, 672]
        assert numbers(facts['tiles']) == [2, 2, 336, 336, 336, 336, 5]
        assert numbers(facts['visual tokens']) == [geo.num_tokens]

        _, lay, _ = layout('llava1_6_mistral_hf_geo', path)
        assert lay.scale == 1 and lay.model[2:] == (672, 672)
        picture = pixels(out)
        vertical, horizontal = lines_across(picture, lay.model, pic.TILE_LINE, row_at=250, col_at=100)
        assert (vertical, horizontal) == (3, 3)
        # Down a column clear of tile lines: 2 border rows, padding down to pad_top, the image, padding.
        left, top, _, height = lay.model
        column = picture[top:top + height, left + 100]
        padding = is_colour(column, pic.PAD_FILL) | is_colour(column, pic.PAD_HATCH)
        first_image_row = pic.TILE_LINE_WIDTH + int(np.argmin(padding[pic.TILE_LINE_WIDTH:]))
        assert first_image_row == geo.pad_top
        assert not padding[geo.pad_top:geo.pad_top + geo.resized_height].any()
        assert padding[geo.pad_top + geo.resized_height:height - pic.TILE_LINE_WIDTH].all()
        assert lay.global_view[2:] == (336, 336)

    def test_drawn_labels_are_the_printed_facts(self, capsys, grey_image, tmp_path):
        """The picture's header is pixel for pixel the printed lines, drawn in the same font."""
        path = grey_image(1000, 600)
        out = str(tmp_path / 'llava.png')
        rc, text, _ = run(capsys, path, '--template', 'llava1_6_mistral_hf_geo', '--out', out)
        assert rc == 0
        printed = list(parse_facts(text).items())
        _, lay, lines = layout('llava1_6_mistral_hf_geo', path)
        assert printed == lines
        left, top, width, height = lay.header
        expected = Image.new('RGB', lay.size, pic.BACKGROUND)
        pic.draw_header(ImageDraw.Draw(expected), pic.load_font(), lay.header, printed)
        crop = (left, top, left + width, top + height)
        assert np.array_equal(pixels(out)[top:top + height, left:left + width], np.asarray(expected.crop(crop)))
        assert count_colour(np.asarray(expected.crop(crop)), pic.TEXT) > 0  # the lines are really drawn


# --- every registered template, whatever family ------------------------------------------------------
@pytest.mark.parametrize('template', template_names())
def test_every_template_prints_and_draws_its_geometry(capsys, grey_image, tmp_path, template):
    """Numbers printed = the prediction; tiles and one-token cells drawn = the geometry's counts."""
    path = grey_image(1000, 600)
    out = str(tmp_path / 'every.png')
    rc, text, err = run(capsys, path, '--template', template, '--out', out, '--max_pixels', '400000')
    assert rc == 0, err
    settings, geo, _ = predicted(template, path, swift_max_pixels=400000)
    facts = parse_facts(text)
    assert numbers(facts['original']) == [1000, 600]
    assert numbers(facts['resized']) == [geo.resized_width, geo.resized_height]
    assert numbers(facts['visual tokens']) == [geo.num_tokens]
    assert numbers(facts['--max_pixels']) == [400000]
    view, lay, _ = layout(template, path, swift_max_pixels=400000)
    picture = pixels(out)
    if geo.tile_cols:
        assert numbers(facts['tiles'])[:2] == [geo.tile_cols, geo.tile_rows]
        tile_w, tile_h = (round(side * lay.scale) for side in view.tile_size)
        across = lines_across(picture, lay.model, pic.TILE_LINE, row_at=tile_h // 2 + 1, col_at=tile_w // 2 + 1)
        assert across == (geo.tile_cols + 1, geo.tile_rows + 1)
    else:
        assert count_colour(picture, pic.TILE_LINE) == 0
    if view.cells is not None and pic.cell_step(view, lay.scale) == 1:
        cell_w, cell_h = (round(f / c * lay.scale) for f, c in zip(view.frame, view.cells, strict=True))
        across = lines_across(picture, lay.model, pic.TOKEN_LINE, row_at=cell_h // 2, col_at=cell_w // 2)
        assert across == (view.cells[0] + 1, view.cells[1] + 1)


def test_json_is_the_geometry_dict(capsys, grey_image):
    path = grey_image(640, 480)
    rc, text, _ = run(capsys, path, '--template', 'qwen2_5_vl_geo', '--json')
    assert rc == 0
    _, geo, _ = predicted('qwen2_5_vl_geo', path)
    assert json.loads(text) == json.loads(json.dumps(geo.to_dict()))
    assert ImageGeometry.from_dict(json.loads(text)) == geo


def test_no_out_writes_nothing(capsys, grey_image, tmp_path):
    path = grey_image(640, 480)
    before = sorted(os.listdir(tmp_path))
    rc, text, _ = run(capsys, path, '--template', 'internvl2_5_geo')
    assert rc == 0 and 'wrote' not in text
    assert sorted(os.listdir(tmp_path)) == before


# --- bad input: exit 2 and a sentence, never a traceback ------------------------------------------------
def _not_an_image(tmp_path):
    path = tmp_path / 'notes.png'
    path.write_text('this is text, not a PNG')
    return str(path)


def _truncated(tmp_path):
    """A PNG cut after its header: the size reads, the pixels do not (found when drawing)."""
    full = tmp_path / 'full.png'
    Image.effect_noise((300, 300), 60).convert('RGB').save(full)
    path = tmp_path / 'cut.png'
    path.write_bytes(full.read_bytes()[:400])
    return str(path)


BAD_INPUTS = {
    # name: (make the image path, extra arguments, text the message must hold)
    'missing_file': (lambda tmp: str(tmp / 'nope.png'), [], 'does not exist'),
    'not_an_image': (_not_an_image, [], 'not a readable image'),
    'truncated_image': (_truncated, ['--out', 'OUT'], 'not a readable image'),
    'folder_as_image': (lambda tmp: str(tmp), [], str),
    'unknown_template': ('GOOD', ['--template', 'no_such_model_geo'], 'template must be one of'),
    'out_folder_missing': ('GOOD', ['--out', 'MISSING/x.png'], 'its folder must exist'),
    'out_is_a_folder': ('GOOD', ['--out', 'TMP'], 'must be a file name'),
    'out_unknown_extension': ('GOOD', ['--out', 'OUT.xyz'], 'extension'),
    'aspect_ratio_refused': ('THIN', [], 'aspect ratio'),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_exits_2(capsys, grey_image, tmp_path, case):
    make, extra, expected = BAD_INPUTS[case]
    if make == 'GOOD':
        image = grey_image(640, 480)
    elif make == 'THIN':
        image = grey_image(1, 300)
    else:
        image = make(tmp_path)
    replace = {'OUT': str(tmp_path / 'out.png'), 'MISSING/x.png': str(tmp_path / 'missing' / 'x.png'),
               'TMP': str(tmp_path), 'OUT.xyz': str(tmp_path / 'out.xyz')}
    extra = [replace.get(a, a) for a in extra]
    args = [image] + (extra if '--template' in extra else ['--template', 'qwen2_5_vl_geo'] + extra)
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert err.startswith('swift-ext show: ') and 'Traceback' not in err + out
    if isinstance(expected, str):
        assert expected in err
    assert not os.path.exists(tmp_path / 'missing')
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]  # no temporary file left behind


def test_bad_environment_variable_exits_2(capsys, grey_image, monkeypatch):
    monkeypatch.setenv('MAX_NUM', 'many')
    rc, _, err = run(capsys, grey_image(640, 480), '--template', 'internvl2_5_geo')
    assert rc == 2 and 'MAX_NUM' in err and "'many'" in err


def test_bad_max_pixels_is_an_argument_error(capsys, grey_image):
    with pytest.raises(SystemExit) as exc:
        run(capsys, grey_image(640, 480), '--template', 'qwen2_5_vl_geo', '--max_pixels', '0')
    assert exc.value.code == 2
    assert 'must be a positive integer, got 0' in capsys.readouterr().err


# --- writing the picture --------------------------------------------------------------------------------
class TestOutNeverFollowsASymlink:
    def test_symlink_to_a_file_is_refused_not_followed(self, capsys, grey_image, tmp_path):
        victim = tmp_path / 'victim.txt'
        victim.write_bytes(b'keep me')
        link = tmp_path / 'out.png'
        link.symlink_to(victim)
        rc, _, err = run(capsys, grey_image(640, 480), '--template', 'qwen2_5_vl_geo', '--out', str(link))
        assert rc == 2 and f'cannot write --out {link}: it is a symlink' in err  # issue 27: named, not replaced
        assert victim.read_bytes() == b'keep me'
        assert link.is_symlink() and os.readlink(link) == str(victim)
        assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]

    def test_dangling_symlink_target_is_not_created(self, capsys, grey_image, tmp_path):
        target = tmp_path / 'elsewhere.png'
        link = tmp_path / 'out.png'
        link.symlink_to(target)
        rc, _, err = run(capsys, grey_image(640, 480), '--template', 'qwen2_5_vl_geo', '--out', str(link))
        assert rc == 2 and 'it is a symlink' in err
        assert not target.exists() and link.is_symlink()

    def test_replaces_a_file_and_leaves_no_temporary(self, capsys, grey_image, tmp_path):
        image = grey_image(640, 480)
        out = tmp_path / 'shown.png'
        out.write_bytes(b'old')
        rc, text, _ = run(capsys, image, '--template', 'internvl2_5_geo', '--out', str(out))
        assert rc == 0 and f'wrote {out}' in text
        assert Image.open(out).format == 'PNG'
        assert sorted(os.listdir(tmp_path)) == ['sample.png', 'shown.png']
