"""`--model DIR` for `plan`, `show` and `score` (a fine-tuned checkpoint's own processor settings, read as the live
template reads them), `show --box`, and `plan --json`'s per-image geometry (issue 26, "what the trial expected").

The checkpoint is the tiny LLaVA-NeXT one with its own pinpoints (336 x 336 added, the 1008-pixel ones gone): a
30 x 30 icon then lands on 336 x 336, not on the reference checkpoint's 672 x 336 (same tokens, another frame), and a
1000 x 300 strip on 672 x 336, not 1008 x 336 (other tokens), so the built-in defaults give other numbers.
"""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from swift_ext.cli import plan, score, show
from swift_ext.cli.show import picture as pic
from swift_ext.testing.tiny import run_flags

PARENT = 'llava1_6_mistral_hf'
TEMPLATE = PARENT + '_geo'
PINPOINTS = [[336, 336], [336, 672], [672, 336], [672, 672]]


@pytest.fixture(scope='module')
def checkpoint(tiny_model, tmp_path_factory):
    """The tiny checkpoint with its own pinpoints, in the processor, image processor and model configs."""
    folder = tmp_path_factory.mktemp('own_pinpoints') / 'ckpt'
    shutil.copytree(tiny_model(PARENT), folder)
    for name in ('config.json', 'preprocessor_config.json', 'processor_config.json'):
        path = folder / name
        data = json.loads(path.read_text())
        for holder in (data, data.get('image_processor', {})):
            if 'image_grid_pinpoints' in holder:
                holder['image_grid_pinpoints'] = PINPOINTS
        path.write_text(json.dumps(data))
    return str(folder)


@pytest.fixture(scope='module')
def icon(tmp_path_factory):
    root = tmp_path_factory.mktemp('icon')
    path = root / 'icon.png'
    Image.new('RGB', (30, 30), (140, 150, 160)).save(path)
    strip = root / 'strip.png'
    Image.new('RGB', (1000, 300), (160, 150, 140)).save(strip)
    data = root / 'data.jsonl'
    data.write_text(''.join(json.dumps({'messages': [{'role': 'user', 'content': '<image>Where?'},
                                                     {'role': 'assistant', 'content': '[0.1, 0.1, 0.5, 0.5]'}],
                                        'images': [str(p)]}) + '\n' for p in (path, strip)))
    return str(path), str(data)


def _encoded_tokens(checkpoint, image):
    """Image tokens ms-swift's own template puts in a real encode of ``image`` with the checkpoint's processor."""
    from swift.model import get_processor
    from swift.template import get_template
    processor = get_processor(checkpoint, model_type=run_flags(PARENT)['model_type'])
    template = get_template(processor, template_type=PARENT)
    template.set_mode('train')
    encoded = template.encode({'messages': [{'role': 'user', 'content': '<image>Where?'},
                                            {'role': 'assistant', 'content': 'x'}], 'images': [image]})
    return int(np.count_nonzero(np.asarray(encoded['input_ids']) == template.image_token_index))


def _plan_json(capsys, data, *extra):
    assert plan.main([data, '--template', TEMPLATE, '--workers', '1', '--sweep', '', '--json', *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_reads_the_checkpoints_settings(checkpoint, icon, capsys):
    image, data = icon
    strip = os.path.join(os.path.dirname(image), 'strip.png')
    tokens = [_encoded_tokens(checkpoint, image), _encoded_tokens(checkpoint, strip)]
    own = _plan_json(capsys, data, '--model', checkpoint)
    assert own['settings']['image_grid_pinpoints'] == PINPOINTS
    assert 'read from the checkpoint' in own['settings_source'] and checkpoint in own['settings_source']
    icon_geo, strip_geo = own['per_image']  # plan --json: each image's geometry, by row and image index
    assert (icon_geo['row'], icon_geo['image_index'], icon_geo['clamped']) == (1, 0, 'upscale')
    assert (icon_geo['canvas_width'], icon_geo['canvas_height']) == (336, 336)
    assert (strip_geo['row'], strip_geo['canvas_width'], strip_geo['canvas_height']) == (2, 672, 336)
    assert [icon_geo['num_tokens'], strip_geo['num_tokens']] == tokens  # what the real encodes hold
    assert own['visual_tokens_total'] == sum(tokens)

    defaults = _plan_json(capsys, data)  # without --model: another model's numbers, and it says so
    assert defaults['per_image'][1]['num_tokens'] != tokens[1]
    assert defaults['settings_source'].startswith('built-in defaults of llava1_6_mistral_hf_geo')
    assert plan.main([data, '--template', TEMPLATE, '--workers', '1', '--sweep', '']) == 0
    assert 'settings: built-in defaults of llava1_6_mistral_hf_geo' in capsys.readouterr().out


def test_show_reads_the_checkpoint_and_draws_a_box(checkpoint, icon, capsys, tmp_path):
    image, _ = icon
    out = str(tmp_path / 'shown.png')
    assert show.main([image, '--template', TEMPLATE, '--model', checkpoint, '--box', '6,3,24,15', '--out', out]) == 0
    facts = dict(line.split(':', 1) for line in capsys.readouterr().out.splitlines() if ':' in line)
    assert facts['settings'].strip() == f'read from {checkpoint}'
    assert facts['resized'].strip() == '336 x 336' and 'canvas' not in facts  # no padding on its own pinpoint
    assert facts['box (original)'].strip() == '[6, 3, 24, 15] px of 30 x 30'
    assert facts['box (model frame)'].strip() == '[67.2, 33.6, 268.8, 168] px of 336 x 336'
    assert facts['box (norm1)'].strip() == '[0.2, 0.1, 0.8, 0.5]'
    # The box is drawn where the model sees it: its outline's corners on the model frame (drawn at 100 %).
    drawn = np.asarray(Image.open(out).convert('RGB'))
    green = np.argwhere(np.all(drawn == pic.BOX_LINE, axis=-1))
    legend_top = green[:, 0].max() - pic.FONT_SIZE  # the legend swatch is the lowest green
    outline = green[green[:, 0] < legend_top]
    height, width = np.ptp(outline[:, 0]) + 1, np.ptp(outline[:, 1]) + 1
    assert (width, height) == (round(268.8) - round(67.2), 168 - round(33.6))

    assert show.main([image, '--template', TEMPLATE, '--json', '--box', '6,3,24,15']) == 0  # the defaults: padded
    d = json.loads(capsys.readouterr().out)
    assert (d['canvas_width'], d['pad_left']) == (672, 168)
    assert d['box']['model_frame'] == pytest.approx([168 + 67.2, 33.6, 168 + 268.8, 168.0])


def test_show_names_exif_orientation_with_a_box(tmp_path, capsys):
    path = tmp_path / 'phone.jpg'
    image = Image.new('RGB', (600, 400), (90, 90, 90))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    assert show.main([str(path), '--template', 'qwen2_5_vl_geo', '--box', '10,10,100,100']) == 0
    text = capsys.readouterr().out
    assert 'EXIF orientation:  6: a viewer shows this image rotated or mirrored' in text
    assert 'original:          600 x 400' in text  # the stored frame, as ms-swift reads it


@pytest.mark.parametrize('args,message', [
    (['--box', '1,2,3'], 'argument --box: must be four numbers x1,y1,x2,y2'),
    (['--box', '0,0,31,10'], '--box 0,0,31,10: must satisfy 0 <= x1 < x2 <= width'),
    (['--box', '10,0,5,10'], '--box 10,0,5,10: must satisfy'),
    (['--box', 'nan,0,5,10'], 'argument --box: must be four numbers'),
    (['--model', '/no/such/checkpoint'], "--model '/no/such/checkpoint': must be a local checkpoint folder"),
])
def test_bad_box_or_model_is_a_clear_error(icon, capsys, args, message):
    image, _ = icon
    with pytest.raises(SystemExit) as exit_:
        rc = show.main([image, '--template', TEMPLATE, *args])
        raise SystemExit(rc)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and 'Traceback' not in err


def test_model_folder_without_a_processor_is_refused(icon, tmp_path, capsys):
    _, data = icon
    assert plan.main([data, '--template', TEMPLATE, '--model', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'has none of preprocessor_config.json' in err and 'Traceback' not in err


def test_score_reads_the_checkpoints_settings(checkpoint, icon, tmp_path, capsys):
    image, _ = icon
    box = [6, 3, 24, 15]
    # A perfect answer on the checkpoint's own 336 x 336 frame, in the template's 0-1 convention.
    row = {'response': json.dumps([[v / 336 for v in (67.2, 33.6, 268.8, 168.0)]]), 'images': [image],
           'solution': box}
    result = tmp_path / 'r.jsonl'
    result.write_text(json.dumps(row) + '\n')
    assert score.main([str(result), '--template', TEMPLATE, '--model', checkpoint, '--json']) == 0
    own = json.loads(capsys.readouterr().out)
    assert own['mean_iou'] == pytest.approx(1.0) and checkpoint in own['settings_source']
    assert score.main([str(result), '--template', TEMPLATE, '--json']) == 0
    defaults = json.loads(capsys.readouterr().out)
    assert defaults['mean_iou'] < 0.99 and defaults['settings_source'].startswith('built-in defaults')
