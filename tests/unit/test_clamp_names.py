"""One set of clamp names (``geometry.Clamp``) counted everywhere: `plan`, `review`, `show` and the `vision/`
metrics name each clamp by what it is (issue 26, item 6), and flag large upscales."""
import json

import pytest
from PIL import Image

from swift_ext import callback
from swift_ext.cli import plan, show
from swift_ext.cli.clamps import LARGE_UPSCALE, MEANINGS, counts
from swift_ext.cli.review.summary import summarize
from swift_ext.geometry import Clamp
from swift_ext.settings import default_settings

SIZES = [(30, 30), (4000, 3000), (640, 480), (3000, 50)]
# template -> the clamp that family names by its own rule (and that a pixel-only count missed)
NAMED = {'llava1_6_mistral_hf': 'canvas_fit', 'mistral_2503': 'longest_edge', 'pixtral': 'longest_edge',
         'gemma4': 'max_soft_tokens', 'qwen2_5_vl': 'min_pixels'}


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('clamps')
    rows = []
    for w, h in SIZES:
        path = root / f'{w}x{h}.png'
        Image.new('RGB', (w, h), (120, 90, 60)).save(path)
        rows.append({'messages': [{'role': 'user', 'content': '<image>Where?'}], 'images': [str(path)]})
    data = root / 'data.jsonl'
    data.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return str(data), [str(root / f'{w}x{h}.png') for w, h in SIZES]


def _plan(capsys, data, template, *extra):
    assert plan.main([data, '--template', template, '--workers', '1', '--sweep', '', '--json', *extra]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert plan.main([data, '--template', template, '--workers', '1', '--sweep', '', *extra]) == 0
    return summary, capsys.readouterr().out


def _geo_lines(template):
    settings = default_settings(template)
    out = []
    for i, (w, h) in enumerate(SIZES):
        geo, clamped = settings.predict(width=w, height=h)
        out.append({'step': 1, 'rank': 0, 'pid': 1, 'mode': 'train', 'sample_id': str(i), 'image_index': 0,
                    'image': f'/img/{w}x{h}.png', 'template': f'{template}_geo', **geo.to_dict(),
                    'clamped': None if clamped is None else str(clamped), 'mismatch': None, 'error': None,
                    'time': 0.0})
    return out


def test_llava_next_canvas_fit_is_not_called_max_pixels(dataset, capsys):
    # issue 26: "shrunk by max_pixels: 4" on LLaVA-NeXT with no max_pixels set: the images were fitted to the canvas.
    data, _ = dataset
    summary, text = _plan(capsys, data, 'llava1_6_mistral_hf_geo')
    assert summary['clamped'] == {**counts(()), 'canvas_fit': 2, 'upscale': 2}  # 4000x3000 and 3000x50 shrunk
    assert 'max_pixels' not in text.split('Sweep')[0]
    assert f'canvas_fit 2: {MEANINGS["canvas_fit"]}' in text and f'upscale 2: {MEANINGS["upscale"]}' in text


def test_a_large_upscale_is_flagged(dataset, capsys):
    # issue 26: a 30x30 icon blown up ~11x to 336x336 went unmentioned
    data, paths = dataset
    summary, text = _plan(capsys, data, 'llava1_6_mistral_hf_geo')
    assert summary['large_upscale_count'] == 1
    flagged = summary['large_upscales'][0]
    assert (flagged['row'], flagged['image_index']) == (1, 0)
    assert '30x30 enlarged 11.2x to 336x336' in flagged['change']
    assert 'Images enlarged 4x or more: 1' in text and 'row 1 image 0' in text
    assert show.main([paths[0], '--template', 'llava1_6_mistral_hf_geo']) == 0
    out = capsys.readouterr().out
    facts = dict(line.split(':', 1) for line in out.splitlines())
    assert facts['limit'].strip() == f'upscale: {MEANINGS["upscale"]}'
    assert '30x30 enlarged 11.2x to 336x336' in facts['upscale']
    assert show.main([paths[2], '--template', 'qwen2_5_vl_geo']) == 0  # 640x480: no upscale line
    assert '\nupscale:' not in capsys.readouterr().out and LARGE_UPSCALE == 4.0


@pytest.mark.parametrize('template', sorted(NAMED))
def test_every_clamp_name_reaches_plan_review_and_metrics(template, dataset, capsys, tmp_path):
    data, _ = dataset
    lines = _geo_lines(template)
    expected = counts(line['clamped'] for line in lines)
    assert expected[NAMED[template]] > 0

    summary, text = _plan(capsys, data, f'{template}_geo')
    assert summary['clamped'] == expected
    assert f'{NAMED[template]} {expected[NAMED[template]]}: {MEANINGS[NAMED[template]]}' in text

    (tmp_path / 'image_geometry.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in lines))
    review = summarize(str(tmp_path)).to_json()
    assert review['clamped'] == expected
    assert review['large_upscales'] == summary['large_upscale_count'] == sum(
        max(r['resized_width'] / r['original_width'], r['resized_height'] / r['original_height']) >= LARGE_UPSCALE
        for r in lines)

    values = callback.step_values(lines)
    assert {c.value: round(sum(values[f'clamped_by_{c}_frac'])) for c in Clamp} == expected


def test_a_foreign_clamp_name_is_counted_as_other(tmp_path):
    lines = _geo_lines('qwen2_5_vl')
    lines[0]['clamped'] = 'x' * 5000  # a damaged log: counted, never a key of its own
    (tmp_path / 'image_geometry.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in lines))
    assert summarize(str(tmp_path)).to_json()['clamped']['other'] == 1
