"""A real `swift rlhf --rlhf_type grpo` run on a tiny Idefics3 checkpoint: the geometry the rewards
receive and the `geo_log` records equal what the Idefics3 processor makes of each file."""
import os

from PIL import Image

from swift_ext.testing.images import make_dataset

# 4 x 1 tiles, 1 x 4 tiles, 4 x 2 tiles (cols x rows), each + the global image. Few tiles on purpose:
# every view is 169 tokens. ms-swift's base collator concatenates `pixel_values` [1, views, 3, 364, 364]
# as they are, so a batch cannot mix view counts: one prompt (x 2 generations) a step, one step an image.
SIZES = [('wide', 1000, 40), ('strip', 40, 600), ('two', 1000, 300)]


def processor_geometry(model_dir, path):
    """(resized w, h, tokens, views, rows, cols) the checkpoint's own processor gives the file, ms-swift's way."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    out = proc.image_processor([load_image(path)], return_row_col_info=True, return_tensors='pt')
    views, rows, cols = out['pixel_values'].shape[1], out['rows'][0][0], out['cols'][0][0]
    return cols * 364, rows * 364, views * proc.image_seq_len, views, rows, cols


def test_grpo_idefics3(e2e, tiny_model, tmp_path):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    lines, proc, run_dir = e2e.grpo(tiny_model('idefics3'), 'idefics3', data, tmp_path, batch=2, steps=len(SIZES))
    print(f'\nE2E idefics3: {e2e.usage(proc)}')
    records = e2e.geometry_log(run_dir)
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        if path not in expected:
            expected[path] = processor_geometry(tiny_model('idefics3'), path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        got = (geo['resized_width'], geo['resized_height'], geo['num_tokens'], geo['num_tiles'], geo['tile_rows'],
               geo['tile_cols'])
        assert got == expected[path], path
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    # geo_log: a rollout and a train record per sample, each what the processor did to its file.
    assert sorted(r['mode'] for r in records) == ['rollout'] * 6 + ['train'] * 6
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == 'idefics3_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens'], r['num_tiles']) == expected[r['image']][:4]
    views = {os.path.basename(p).split('_')[0]: g[3:] for p, g in expected.items()}
    assert views == {'wide': (5, 1, 4), 'strip': (5, 4, 1), 'two': (9, 2, 4)}  # (views, rows, cols)
