"""A real `swift rlhf --rlhf_type grpo` run on a tiny Llama 4 checkpoint with `--callbacks geo_log`: every
logged image and every reward's geometry equals what the checkpoint's own processor does to the file (its
views, its `<|patch|>` expansion, where its canvas holds the image)."""
import os

import torch

from swift_ext.testing.images import make_dataset

PARENT = 'llama4'
# 50x60 grows to one tile (280x336, no global view); 400x100 sits unscaled in a 1x2 canvas + a global view.
# Small on purpose: the tiny model's memory is the sequence times its 202,048-row vocabulary.
SIZES = (('tiny', 50, 60), ('wide', 400, 100))
FIELDS = ('original_width', 'original_height', 'resized_width', 'resized_height', 'canvas_width', 'canvas_height',
          'tile_cols', 'tile_rows', 'num_tiles', 'num_tokens', 'thumbnail')


def processor_geometry(processor, path):
    """One file's geometry read from the checkpoint's processor outputs: the views, the tile grid
    (``aspect_ratios``), the content laid back into the canvas (padding is -1), the ``<|patch|>`` tokens."""
    from swift.template.vision_utils import load_image
    img = load_image(path)
    out = processor(images=[img], text='<|image|>', return_tensors='pt', return_mm_token_type_ids=False)
    views = out['pixel_values']
    rows, cols = processor.image_processor(images=[img], return_tensors='pt')['aspect_ratios'][0].tolist()
    tile = views.shape[-1]
    canvas = torch.zeros(3, rows * tile, cols * tile)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = views[i].float()
    ys, xs = torch.nonzero((canvas + 1).abs().amax(0) > 1e-3, as_tuple=True)
    assert int(xs.min()) == int(ys.min()) == 0  # the content sits top-left
    patch = processor.tokenizer.convert_tokens_to_ids('<|patch|>')
    return {'original_width': img.width, 'original_height': img.height, 'resized_width': int(xs.max()) + 1,
            'resized_height': int(ys.max()) + 1, 'canvas_width': cols * tile, 'canvas_height': rows * tile,
            'tile_cols': cols, 'tile_rows': rows, 'num_tiles': views.shape[0],
            'num_tokens': int((out['input_ids'] == patch).sum()), 'thumbnail': views.shape[0] > 1}


def test_grpo_logs_and_rewards_get_what_the_processor_does(e2e, tiny_model, tmp_path):
    from transformers import AutoProcessor
    model = tiny_model(PARENT)
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    # bfloat16 as the real checkpoints: Llama4ImageProcessor hands bfloat16 pixels over, which transformers'
    # Llama 4 does not cast (a float32 model fails on its own processor's output). `--bf16 false`: bfloat16
    # weights without the trainer's mixed precision, which transformers refuses on CPU.
    probed, proc, run_dir = e2e.grpo(model, PARENT, data, tmp_path, batch=2 * len(SIZES),
                                     extra=['--torch_dtype', 'bfloat16', '--bf16', 'false'])
    print(f'\ngrpo {PARENT}: {e2e.usage(proc)}')
    processor = AutoProcessor.from_pretrained(model)
    logged = e2e.geometry_log(run_dir)
    expected = {os.path.basename(r['image']): processor_geometry(processor, r['image']) for r in logged}
    assert set(expected) == {f'{n}_{w}x{h}.png' for n, w, h in SIZES}
    assert {(r['mode'], r['error']) for r in logged} == {('rollout', None), ('train', None)}
    for rec in logged:
        assert {k: rec[k] for k in FIELDS} == expected[os.path.basename(rec['image'])], rec['image']
        assert rec['mismatch'] is None and rec['template'] == PARENT + '_geo'
    assert sorted(e['num_tiles'] for e in expected.values()) == [1, 3]
    assert len(probed) == 2 * len(SIZES)
    for line in probed:  # the rewards got the template's record
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
        geo = line['geometry'][0]
        assert {k: geo[k] for k in FIELDS} == expected[os.path.basename(line['paths'][0])]
