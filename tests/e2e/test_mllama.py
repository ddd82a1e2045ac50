"""A real `swift rlhf --rlhf_type grpo` run on a tiny Llama 3.2 Vision (Mllama) checkpoint with `--callbacks
geo_log`: every logged image and every reward's geometry equals what the checkpoint's own processor does to
the file (its tile arrangement, where its canvas holds the image, the tiles the text cross-attends to)."""
import os

import torch

from swift_ext.testing.images import make_dataset

PARENT = 'llama3_2_vision'
# 50x60 grows to one tile (466x560); 1000x100 sits unscaled in a 1x2-tile canvas.
SIZES = (('tiny', 50, 60), ('wide', 1000, 100))
FIELDS = ('original_width', 'original_height', 'resized_width', 'resized_height', 'canvas_width', 'canvas_height',
          'tile_cols', 'tile_rows', 'num_tiles', 'num_tokens')


def processor_geometry(processor, per_tile, path):
    """One file's geometry read from the checkpoint's processor outputs: the aspect ratio id and tile mask, the
    content laid back into the canvas (zero padding), the tiles the text after ``<|image|>`` may attend to."""
    from swift.template.vision_utils import load_image
    from transformers.models.mllama.image_processing_mllama import get_all_supported_aspect_ratios
    ip = processor.image_processor
    img = load_image(path)
    out = processor(images=[img], text='<|image|>Where?', return_tensors='pt')
    rows, cols = get_all_supported_aspect_ratios(ip.max_image_tiles)[int(out['aspect_ratio_ids'][0, 0]) - 1]
    tiles = out['pixel_values'][0, 0]
    tile = tiles.shape[-1]
    canvas = torch.zeros(3, rows * tile, cols * tile)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = tiles[i]
    pad = (-torch.tensor(ip.image_mean) / torch.tensor(ip.image_std)).view(3, 1, 1)
    ys, xs = torch.nonzero((canvas - pad).abs().amax(0) > 1e-4, as_tuple=True)
    assert int(xs.min()) == int(ys.min()) == 0  # the content sits top-left
    visible = int(out['cross_attention_mask'][0, -1, 0].sum())
    return {'original_width': img.width, 'original_height': img.height, 'resized_width': int(xs.max()) + 1,
            'resized_height': int(ys.max()) + 1, 'canvas_width': cols * tile, 'canvas_height': rows * tile,
            'tile_cols': cols, 'tile_rows': rows, 'num_tiles': int(out['aspect_ratio_mask'][0, 0].sum()),
            'num_tokens': visible * per_tile}


def test_grpo_logs_and_rewards_get_what_the_processor_does(e2e, tiny_model, tmp_path):
    from transformers import AutoConfig, AutoProcessor, MllamaVisionModel
    model = tiny_model(PARENT)
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    probed, proc, run_dir = e2e.grpo(model, PARENT, data, tmp_path, batch=2 * len(SIZES))
    print(f'\ngrpo {PARENT}: {e2e.usage(proc)}')
    processor = AutoProcessor.from_pretrained(model)
    per_tile = MllamaVisionModel(AutoConfig.from_pretrained(model).vision_config).num_patches
    logged = e2e.geometry_log(run_dir)
    expected = {os.path.basename(r['image']): processor_geometry(processor, per_tile, r['image']) for r in logged}
    assert set(expected) == {f'{n}_{w}x{h}.png' for n, w, h in SIZES}
    assert {(r['mode'], r['error']) for r in logged} == {('rollout', None), ('train', None)}
    for rec in logged:
        assert {k: rec[k] for k in FIELDS} == expected[os.path.basename(rec['image'])], rec['image']
        assert rec['mismatch'] is None and rec['template'] == PARENT + '_geo'
    assert sorted(e['num_tiles'] for e in expected.values()) == [1, 2]
    assert len(probed) == 2 * len(SIZES)
    for line in probed:  # the rewards got the template's record
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
        geo = line['geometry'][0]
        assert {k: geo[k] for k in FIELDS} == expected[os.path.basename(line['paths'][0])]
