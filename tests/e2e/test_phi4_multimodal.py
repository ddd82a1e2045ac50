"""A real `swift rlhf --rlhf_type grpo` run on a tiny Phi-4-multimodal checkpoint with `--callbacks geo_log`.

ms-swift's `phi4_multimodal` template and loader run as they are; the checkpoint's remote code is swift-ext's
stand-in for the hub processor and model (``swift_ext/testing/tiny/phi4mm_remote``), built on transformers'
port. Every logged image and every reward's geometry equals what that processor does to the file (its
canvas, where the canvas holds the image, its ``num_img_tokens``, the ``<|endoftext10|>`` tokens)."""
import os

import torch

from swift_ext.testing.images import make_dataset

PARENT = 'phi4_multimodal'
# 50x60 grows to fill one crop (373x448); 700x100 to a 2x1 canvas (896x128).
SIZES = (('tiny', 50, 60), ('wide', 700, 100))
FIELDS = ('original_width', 'original_height', 'resized_width', 'resized_height', 'canvas_width', 'canvas_height',
          'tile_cols', 'tile_rows', 'num_tiles', 'num_tokens')


def processor_geometry(processor, path):
    """One file's geometry read from the checkpoint's processor: its canvas (``image_sizes``), the crops laid
    back into it (white padding is 1.0 once normalised), its views and its ``<|endoftext10|>`` run."""
    from swift.template.vision_utils import load_image
    img = load_image(path)
    out = processor(text='<|image_1|>', images=[img])
    canvas_h, canvas_w = out['image_sizes'][0].tolist()
    crops = out['input_image_embeds'][0]
    tile = crops.shape[-1]
    rows, cols = canvas_h // tile, canvas_w // tile
    canvas = torch.zeros(3, canvas_h, canvas_w)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = crops[1 + i]  # the global view first
    ys, xs = torch.nonzero((canvas - 1).abs().amax(0) > 1e-3, as_tuple=True)
    assert int(xs.min()) == int(ys.min()) == 0  # the content sits top-left
    return {'original_width': img.width, 'original_height': img.height, 'resized_width': int(xs.max()) + 1,
            'resized_height': int(ys.max()) + 1, 'canvas_width': canvas_w, 'canvas_height': canvas_h,
            'tile_cols': cols, 'tile_rows': rows, 'num_tiles': 1 + rows * cols,
            'num_tokens': int((out['input_ids'] == 200010).sum())}


def test_grpo_logs_and_rewards_get_what_the_processor_does(e2e, tiny_model, tmp_path):
    from transformers import AutoProcessor
    model = tiny_model(PARENT)
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    # ms-swift 4.6's Phi4MMTemplate concatenates `input_image_embeds` as they are (the hub processor pads crops
    # within one call only): a batch cannot mix crop counts. One prompt (x 2 generations) a step.
    probed, proc, run_dir = e2e.grpo(model, PARENT, data, tmp_path, batch=2, steps=len(SIZES))
    print(f'\ngrpo {PARENT}: {e2e.usage(proc)}')
    processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
    logged = e2e.geometry_log(run_dir)
    expected = {os.path.basename(r['image']): processor_geometry(processor, r['image']) for r in logged}
    assert set(expected) == {f'{n}_{w}x{h}.png' for n, w, h in SIZES}
    assert {(r['mode'], r['error']) for r in logged} == {('rollout', None), ('train', None)}
    for rec in logged:
        assert {k: rec[k] for k in FIELDS} == expected[os.path.basename(rec['image'])], rec['image']
        assert rec['mismatch'] is None and rec['template'] == PARENT + '_geo'
    assert sorted(e['num_tiles'] for e in expected.values()) == [2, 3]
    assert len(probed) == 2 * len(SIZES)
    for line in probed:  # the rewards got the template's record
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
        geo = line['geometry'][0]
        assert {k: geo[k] for k in FIELDS} == expected[os.path.basename(line['paths'][0])]
