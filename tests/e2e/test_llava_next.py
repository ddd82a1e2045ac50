"""Real `swift rlhf --rlhf_type grpo` (and one `swift sft` step) on tiny LLaVA-NeXT and LLaVA-OneVision
checkpoints with `--callbacks geo_log`: every logged image and every reward's geometry equals what the
checkpoint's own processor does to that file (its token expansion, its views, where its canvas holds
the image). Each run's wall time and peak RSS are printed (`pytest -s`)."""
import json
import os

import pytest
import torch
from PIL import Image

from swift_ext.testing.images import make_dataset

NEXT, OV = 'llava1_6_mistral_hf', 'llava_onevision_hf'
# Small files, kept to 1-3 tiles: a tiny model's memory is the visual tokens times the vocabulary.
SIZES = {NEXT: (('tiny', 50, 60), ('wide', 1000, 100)),  # 672x336 (2 tiles), 1008x336 (3 tiles)
         OV: (('tiny', 50, 60), ('wide', 400, 100))}  # 384x384 (1 tile), 768x384 (2 tiles)
GEOMETRY_FIELDS = ('original_width', 'original_height', 'resized_width', 'resized_height', 'canvas_width',
                   'canvas_height', 'pad_left', 'pad_top', 'tile_cols', 'tile_rows', 'num_tiles', 'num_tokens',
                   'global_width', 'global_height', 'thumbnail')


def processor_geometry(processor, path):
    """The geometry of one file as the checkpoint's processor makes it, read from its outputs.

    Tokens: the processor's own `<image>` expansion. Views: pixel_values. Canvas: transformers'
    select_best_resolution. Content size and padding: where the tiles, laid back into the canvas,
    differ from the processor's zero padding.
    """
    from swift.template.vision_utils import load_image
    from transformers.image_processing_utils import select_best_resolution
    ip = processor.image_processor
    img = load_image(path)
    out = processor(images=[img], text='<image>', return_tensors='pt')
    views = out['pixel_values'][0]
    tile = views.shape[-1]
    canvas_h, canvas_w = select_best_resolution((img.height, img.width), ip.image_grid_pinpoints)
    rows, cols = canvas_h // tile, canvas_w // tile
    canvas = torch.zeros(3, canvas_h, canvas_w)
    for i, view in enumerate(views[1:]):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = view
    pad = (-torch.tensor(ip.image_mean) / torch.tensor(ip.image_std)).view(3, 1, 1)
    ys, xs = torch.nonzero((canvas - pad).abs().amax(0) > 1e-4, as_tuple=True)
    return {'original_width': img.width, 'original_height': img.height,
            'resized_width': int(xs.max() - xs.min()) + 1, 'resized_height': int(ys.max() - ys.min()) + 1,
            'canvas_width': canvas_w, 'canvas_height': canvas_h, 'pad_left': int(xs.min()), 'pad_top': int(ys.min()),
            'tile_cols': cols, 'tile_rows': rows, 'num_tiles': views.shape[0],
            'num_tokens': int((out['input_ids'] == processor.image_token_id).sum()),
            'global_width': tile, 'global_height': tile, 'thumbnail': True}


def _fields(geo):
    return {k: geo[k] for k in GEOMETRY_FIELDS}


@pytest.mark.parametrize('parent', [NEXT, OV])
def test_grpo_logs_and_rewards_get_what_the_processor_does(e2e, tiny_model, tmp_path, parent):
    from transformers import AutoProcessor
    model = tiny_model(parent)
    sizes = SIZES[parent]
    data = make_dataset(str(tmp_path / 'data'), sizes=sizes)
    # OneVision has no trained box output: name the convention, as a user must.
    probed, proc, run_dir = e2e.grpo(model, parent, data, tmp_path, batch=2 * len(sizes),
                                     env={'SWIFT_EXT_COORDS': 'norm1'} if parent == OV else None)
    print(f'\ngrpo {parent}: {e2e.usage(proc)}')
    processor = AutoProcessor.from_pretrained(model)
    logged = e2e.geometry_log(run_dir)
    files = {os.path.basename(r['image']) for r in logged}
    assert files == {f'{n}_{w}x{h}.png' for n, w, h in sizes}
    expected = {os.path.basename(r['image']): processor_geometry(processor, r['image']) for r in logged}
    assert {(r['mode'], r['error']) for r in logged} == {('rollout', None), ('train', None)}
    for rec in logged:  # both the rollout and the training encode
        assert _fields(rec) == expected[os.path.basename(rec['image'])], rec['image']
        assert rec['mismatch'] is None and rec['template'] == parent + '_geo'
    assert len({n for n, _, _ in sizes}) == len({e['num_tiles'] for e in expected.values()})  # 2 tile counts

    # The rewards got the same geometry, from the template's record (PyTorch rollout).
    assert len(probed) == 2 * len(sizes)
    for line in probed:
        assert line['from_template'] == [True] and line['coords'] == 'norm1'
        assert _fields(line['geometry'][0]) == expected[os.path.basename(line['paths'][0])]
    completions = e2e.read_lines(os.path.join(run_dir, 'completions.jsonl'))[0]
    for column in ('GeoIoU', 'GeoFormat'):  # scored (a random model writes no box: 0.0), never skipped
        assert all(isinstance(v, float) and v == v for v in completions[column]), completions[column]


def test_sft_one_step_onevision(e2e, tiny_model, tmp_path):
    from transformers import AutoProcessor
    model = tiny_model(OV)
    # SFT rows: the box as the assistant's answer, 0-1 of the canvas style
    data = e2e.dataset(tmp_path / 'data', SIZES[OV], answer=lambda row: json.dumps(row['solution']))
    out = str(tmp_path / 'out')
    args = e2e.train_args(model, OV, data, out, extra=['--per_device_train_batch_size', '1',
                                                       '--gradient_accumulation_steps', '1'])
    proc = e2e.swift('sft', *args, env={'GEO_PROBE_OUT': str(tmp_path / 'probe.jsonl')})
    print(f'\nsft {OV}: {e2e.usage(proc)}')
    processor = AutoProcessor.from_pretrained(model)
    [run_dir] = e2e.run_dirs(out)
    logged = e2e.geometry_log(run_dir)
    assert logged and {r['mode'] for r in logged} == {'train'}
    for rec in logged:
        assert _fields(rec) == processor_geometry(processor, rec['image']), rec['image']
    assert Image.open(logged[0]['image']).size == (logged[0]['original_width'], logged[0]['original_height'])
