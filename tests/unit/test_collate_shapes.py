"""Rows ms-swift's parent collators cannot batch together: each family's ``collate_shape`` rule, pinned to the
real parent template's ``data_collator`` on two real encodes (tiny checkpoints), and `plan` naming the same rows.

Each case has a pair of rows the parent fails to collate (the error it raises) and a pair it collates, so the
rule is neither too strict nor too loose.
"""
import json

import pytest
from PIL import Image

from swift_ext.cli import plan
from swift_ext.families import family_of
from swift_ext.testing.tiny import run_flags

A, B, C = (640, 480), (300, 500), (300, 300)
# parent: (rows the parent cannot batch, its error, rows it batches). A row is a list of (width, height).
CASES = {
    # a 1-image row's pixel_values are squeezed to 4-D, a 2-image row's stay 5-D (issue 26's crash at step 2)
    'llava1_6_mistral_hf': ([[A], [A, B]], 'Tensors must have same number of dimensions: got 4 and 5',
                            [[A], [B]]),  # 1-image rows of 5 and 3 views batch
    'llava_onevision_hf': ([[A], [A, B]], 'Tensors must have same number of dimensions', [[A], [B]]),
    # different resized sizes; a 2-image row is padded to its largest sides (644x504 here), so it batches with one
    # image of that size
    'mistral_2503': ([[A], [B]], 'Sizes of tensors must match', [[A, B], [(644, 504)]]),
    'pixtral': ([[A], [B]], 'stack expects each tensor to be equal size', [[A, B], [(640, 512)]]),
    # 2 crops (1 + global) against 5; a 2-image row is padded to its most crops
    'phi4_multimodal': ([[C], [A]], 'Sizes of tensors must match', [[C, A], [A]]),
    # 1 image against 2; 1-image rows of different tile counts batch
    'llama3_2_vision': ([[A], [A, B]], 'Sizes of tensors must match', [[A], [B]]),
}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('collate_images')
    paths = {}

    def get(size):
        if size not in paths:
            paths[size] = str(root / f'{size[0]}x{size[1]}.png')
            Image.new('RGB', size, (170, 60 + len(paths) * 20, 40)).save(paths[size])
        return paths[size]
    return get


def _row(paths):
    return {'messages': [{'role': 'user', 'content': '<image>' * len(paths) + 'Where is it?'},
                         {'role': 'assistant', 'content': '[1, 2, 3, 4]'}], 'images': list(paths)}


def _parent_collate(checkpoint, parent, rows):
    """ms-swift's own template (no swift-ext class) encodes each row, then collates them into one batch."""
    from swift.model import get_processor
    from swift.template import get_template
    processor = get_processor(checkpoint, model_type=run_flags(parent)['model_type'])
    template = get_template(processor, template_type=parent)
    template.set_mode('train')
    return template.data_collator([template.encode(_row(r)) for r in rows])


def _plan(tmp_path, capsys, checkpoint, parent, rows, *extra):
    data = tmp_path / f'{parent}.jsonl'
    data.write_text(''.join(json.dumps(_row(r)) + '\n' for r in rows))
    argv = [str(data), '--template', f'{parent}_geo', '--model', checkpoint, '--workers', '1', '--sweep', '', *extra]
    assert plan.main(argv + ['--json']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert plan.main(argv) == 0
    return summary, capsys.readouterr().out


@pytest.mark.parametrize('parent', sorted(CASES))
def test_plan_names_the_rows_the_parent_collator_cannot_batch(parent, tiny_model, images, tmp_path, capsys):
    failing, error, batching = CASES[parent]
    checkpoint = tiny_model(parent)
    failing = [[images(s) for s in row] for row in failing]
    batching = [[images(s) for s in row] for row in batching]

    with pytest.raises(RuntimeError, match=error):
        _parent_collate(checkpoint, parent, failing)
    summary, text = _plan(tmp_path, capsys, checkpoint, parent, failing)
    collate = summary['collate']
    assert collate['mixed'] and collate['can_fail']
    assert sorted(g['first_rows'] for g in collate['groups']) == [[1], [2]]
    assert collate['rule'] == family_of(parent)[0].collate_rule != ''
    assert 'Rows ms-swift cannot put in one batch: 2 groups' in text
    assert '(row 1)' in text and '(row 2)' in text

    _parent_collate(checkpoint, parent, batching)  # the parent batches these: plan must not warn
    summary, text = _plan(tmp_path, capsys, checkpoint, parent, batching)
    assert not summary['collate']['mixed'] and len(summary['collate']['groups']) == 1
    assert 'cannot put in one batch' not in text


def test_batch_size_one_never_mixes_rows(tiny_model, images, tmp_path, capsys):
    parent = 'llava1_6_mistral_hf'
    rows = [[images(s) for s in row] for row in CASES[parent][0]]
    summary, text = _plan(tmp_path, capsys, tiny_model(parent), parent, rows, '--batch_size', '1')
    assert summary['collate']['mixed'] and not summary['collate']['can_fail']
    assert 'cannot put in one batch' not in text and 'with --batch_size 1 they never share a batch' in text


def test_families_that_batch_anything_have_no_rule():
    from swift_ext.families.base import FAMILIES
    ruled = {name for name, fam in FAMILIES.items() if fam.collate_rule}
    assert {'llava_next', 'llava_onevision', 'pixtral', 'phi4_multimodal', 'mllama'} <= ruled
    qwen = family_of('qwen2_5_vl')[0]
    assert qwen.collate_shape(None, []) is None
