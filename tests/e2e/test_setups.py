"""The setups real runs use, each a real tiny `swift sft` / `swift rlhf` run on the tiny Qwen2.5-VL with
`--callbacks geo_log`: dataloader workers, streaming, streaming with packing, GRPO with several steps per
generation and with rollouts reused. In each, every step's `vision/` counts must equal the images the step
really trained on, as an independent probe sees them in the batches ``compute_loss`` receives
(``tests/e2e/plugins/consumed.py``), and every image line must be attributed to that step through the batch
log (``swift_ext.steps.trained_steps``) and hold what the libraries did to its file.

Rows carry 1, 2 or 3 images so that a step attributed wrongly shows in the counts.
"""
import json
import os
from collections import Counter, defaultdict

import pytest
from PIL import Image

from swift_ext.steps import trained_steps
from swift_ext.testing.images import box_for, make_images

TIMEOUT = 400
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSUMED = os.path.join(ROOT, 'e2e', 'plugins', 'consumed.py')
PACKING = os.path.join(ROOT, 'e2e', 'plugins', 'packing_on_cpu.py')
SIZES = tuple((f'img{i}', 40 + 17 * i, 32 + 9 * i) for i in range(8))
IMAGES_PER_ROW = (1, 2, 3, 1, 3, 2, 1, 2)


def dataset(tmp_path, *, answer: bool) -> str:
    """8 rows of 1-3 distinct images each (distinct across rows too), as GRPO or SFT rows."""
    paths = make_images(str(tmp_path / 'images'), SIZES)
    names = [n for n, _, _ in SIZES]
    rows, k = [], 0
    for count in IMAGES_PER_ROW:
        images = [paths[names[(k + j) % len(names)]] for j in range(count)]
        k += count
        w, h = Image.open(images[0]).size
        row = {'messages': [{'role': 'user', 'content': '<image>' * count + 'Where is the red box?'}],
               'images': images, 'solution': box_for(w, h)}
        if answer:
            row['messages'].append({'role': 'assistant', 'content': json.dumps([{'bbox_2d': row['solution']}])})
        rows.append(row)
    path = tmp_path / 'data.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return str(path)


def run(e2e, tiny_model, tmp_path, command: list, *, plugins=(CONSUMED,), extra=(), steps=4) -> str:
    out = str(tmp_path / 'out')
    probe = str(tmp_path / 'consumed.jsonl')
    model = tiny_model('qwen2_5_vl')
    args = e2e.train_args(model, 'qwen2_5_vl', dataset(tmp_path, answer=command[0] == 'sft'), out, steps=steps,
                          plugins=list(plugins), callbacks=('geo_log', 'consumed_probe'), extra=extra)
    e2e.swift(*command, *args, env={'CONSUMED_PROBE_OUT': probe}, timeout=TIMEOUT)
    [run_dir] = e2e.run_dirs(out)
    return run_dir


def consumed_by_step(tmp_path) -> dict:
    out = defaultdict(int)
    for line in map(json.loads, (tmp_path / 'consumed.jsonl').read_text().splitlines()):
        out[line['step']] += line['images']
    return dict(out)


def logged_by_step(e2e, run_dir) -> dict:
    out = {}
    for rec in e2e.read_lines(os.path.join(run_dir, 'logging.jsonl')):
        if 'global_step/max_steps' in rec and 'vision/images_per_step' in rec:
            out[int(rec['global_step/max_steps'].split('/')[0])] = rec['vision/images_per_step']
    return out


def check_steps(e2e, tmp_path, run_dir, steps: int) -> dict:
    """vision/images_per_step == what each step trained on == the train lines the batch log gives the step."""
    truth = consumed_by_step(tmp_path)
    assert sorted(truth) == list(range(1, steps + 1)) and all(truth.values()), truth
    assert logged_by_step(e2e, run_dir) == truth
    lines = e2e.geometry_log(run_dir)
    events = e2e.read_lines(os.path.join(run_dir, 'image_batches.jsonl'))
    lines, per_step = trained_steps([x for x in lines if x['mode'] == 'train'], events)
    assert {s: len(v) for s, v in per_step.items()} == truth
    for step, trained in per_step.items():
        assert all(x['error'] is None and x['mismatch'] is None for x in trained)
        assert all(x['step'] is not None and x['step'] <= step for x in trained)  # first training of each
    return per_step


def check_sizes(lines) -> None:
    """Each line is what qwen-vl-utils made of its file."""
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image
    for x in lines:
        w, h = fetch_image({'image': load_image(x['image'])}, image_patch_size=14).size
        assert (x['original_width'], x['original_height']) == Image.open(x['image']).size
        assert (x['resized_width'], x['resized_height'], x['num_tokens']) == (w, h, w * h // 28 ** 2)


SFT = ['sft', '--per_device_train_batch_size', '1', '--gradient_accumulation_steps', '1']


def test_sft_with_dataloader_workers(e2e, tiny_model, tmp_path):
    # Two workers prefetch 2 x 2 batches before step 1 trains; each writes its batch's lines at its collate.
    run_dir = run(e2e, tiny_model, tmp_path, SFT, extra=['--dataloader_num_workers', '2'])
    per_step = check_steps(e2e, tmp_path, run_dir, 4)
    trained = [x for v in per_step.values() for x in v]
    assert all(x['step'] is None for x in e2e.geometry_log(run_dir))  # none was trained when it was written
    assert len({x['pid'] for x in trained}) == 2  # the two workers wrote them
    check_sizes(trained)


def test_sft_streaming(e2e, tiny_model, tmp_path):
    # ms-swift encodes map batches of 16 rows ahead of the dataloader: the collate gets converted copies.
    run_dir = run(e2e, tiny_model, tmp_path, SFT, extra=['--streaming', 'true'])
    per_step = check_steps(e2e, tmp_path, run_dir, 4)
    check_sizes([x for v in per_step.values() for x in v])


def test_sft_streaming_with_packing(e2e, tiny_model, tmp_path):
    # Packing workers start (and encode) before the trainer names the run folder; they learn it through
    # the channel file and write each encode at once; the trainer collates packed rows.
    run_dir = run(e2e, tiny_model, tmp_path, SFT, plugins=(PACKING, CONSUMED), steps=2,
                  extra=['--streaming', 'true', '--packing', 'true', '--max_length', '2048'])
    per_step = check_steps(e2e, tmp_path, run_dir, 2)
    check_sizes([x for v in per_step.values() for x in v])


GRPO = ['rlhf', '--rlhf_type', 'grpo', '--reward_funcs', 'geo_iou', '--num_generations', '2',
        '--per_device_train_batch_size', '2', '--max_completion_length', '4']


@pytest.mark.parametrize('flag', ['--steps_per_generation', '--num_iterations'])
def test_grpo_several_steps_per_generation(e2e, tiny_model, tmp_path, flag):
    # --steps_per_generation 2: one generation encodes both steps' batches at step 1; --num_iterations 2:
    # step 2 trains on step 1's batch again. Each step must count what it trained on.
    run_dir = run(e2e, tiny_model, tmp_path, GRPO, extra=[flag, '2'])
    per_step = check_steps(e2e, tmp_path, run_dir, 4)
    lines = e2e.geometry_log(run_dir)
    rollout_steps = Counter(x['step'] for x in lines if x['mode'] == 'rollout')
    assert sorted(rollout_steps) == [1, 3]  # a generation every second step
    if flag == '--num_iterations':
        assert [x['image'] for x in per_step[2]] == [x['image'] for x in per_step[1]]
