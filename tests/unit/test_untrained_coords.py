"""Templates whose checkpoints have no trained box output: `templates` (text, markdown, JSON), `score` and
`geo_iou` say the same thing — no convention is guessed until `SWIFT_EXT_COORDS` names one (issue 26, item 8)."""
import json

import pytest
from PIL import Image

from swift_ext.cli import score, templates_table
from swift_ext.families.base import UNTRAINED_COORDS
from swift_ext.rewards import COORDS_ENV, GeoIoU, answer_coords
from swift_ext.settings import default_settings, template_parent


@pytest.fixture(autouse=True)
def no_coords(monkeypatch):
    monkeypatch.delenv(COORDS_ENV, raising=False)


def test_every_table_says_what_geo_iou_reads():
    rows = templates_table.rows()
    text = templates_table.format_text(rows).splitlines()[1:]
    markdown = templates_table.format_markdown(rows).splitlines()[2:]
    assert any(not r['boxes_trained'] for r in rows) and any(r['boxes_trained'] for r in rows)
    for row, text_line, md_line in zip(rows, text, markdown, strict=True):
        reads = answer_coords(default_settings(template_parent(row['template'])))
        assert row['geo_iou_coords'] == reads, row['template']
        if reads is None:
            assert UNTRAINED_COORDS.replace('`', '') in text_line and UNTRAINED_COORDS in md_line
            assert 'default norm1000' not in text_line  # the old text named a convention geo_iou never used
        else:
            assert f'  {reads}  ' in text_line and f'| `{reads}` |' in md_line


def test_geo_iou_gives_none_until_the_convention_is_named(monkeypatch, tmp_path):
    settings = default_settings('gemma4')
    geo, _ = settings.predict(width=640, height=480)
    answer = json.dumps([geo.to_model_frame([64, 48, 320, 240], 'norm1000')])
    kwargs = {'image_geometry': [geo], 'settings': settings, 'solution': [64, 48, 320, 240]}
    assert GeoIoU().score(answer, **kwargs) is None
    monkeypatch.setenv(COORDS_ENV, 'norm1000')
    assert GeoIoU().score(answer, **kwargs) == pytest.approx(1.0)


def test_score_refuses_to_guess_like_geo_iou(tmp_path, capsys, monkeypatch):
    image = tmp_path / 'a.png'
    Image.new('RGB', (640, 480), (90, 90, 90)).save(image)
    settings = default_settings('gemma4')
    geo, _ = settings.predict(width=640, height=480)
    box = [64, 48, 320, 240]
    row = {'response': json.dumps([geo.to_model_frame(box, 'norm1000')]), 'images': [str(image)], 'solution': box}
    result = tmp_path / 'r.jsonl'
    result.write_text(json.dumps(row) + '\n')
    assert score.main([str(result), '--template', 'gemma4', '--json']) == 2
    err = capsys.readouterr().err
    assert 'no trained box output: set SWIFT_EXT_COORDS' in err and 'Traceback' not in err
    assert score.main([str(result), '--template', 'gemma4', '--coords', 'norm1000', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['coords'] == 'norm1000'
    monkeypatch.setenv(COORDS_ENV, 'norm1000')
    assert score.main([str(result), '--template', 'gemma4', '--json']) == 0
