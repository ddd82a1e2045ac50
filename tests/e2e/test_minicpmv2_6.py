"""Real `swift rlhf --rlhf_type grpo` runs on tiny MiniCPM-V 2.6 / 4.0 / 4.5 and MiniCPM-o 2.6 / 4.5 checkpoints
that ship OpenBMB's processor as remote code: the geometry the rewards receive and the `geo_log` records equal
what that processor makes of each file."""
import os

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

# No slices (the source upscaled to ~448**2), 2 cols x 1 row, 1 col x 4 rows.
SIZES = [('tiny', 50, 60), ('landscape', 640, 480), ('tall', 300, 2000)]
# One run per ms-swift template class (MiniCPMV2_6Template, MiniCPMV4_5Template, MiniCPMO4_5Template); minicpmv4
# and minicpmo share minicpmv2_6's class and differ in chat format only: their encodes are pinned in unit tests.
PARENTS = ['minicpmv2_6', 'minicpmv4_5', 'minicpmo4_5']


def processor_geometry(model_dir, path):
    """(resized w, h, tokens, views, rows, cols) the checkpoint's own remote-code processor gives the file."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    ip = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True).image_processor
    image = load_image(path)
    sizes = ip([[image]], return_tensors='pt')['tgt_sizes'][0].tolist()
    grid = ip.get_sliced_grid(image.size, ip.max_slice_nums)
    cols, rows = grid or (0, 0)
    view_h, view_w = sizes[1] if grid else sizes[0]
    return (view_w * 14 * max(cols, 1), view_h * 14 * max(rows, 1), 64 * len(sizes), len(sizes), rows, cols)


@pytest.mark.parametrize('parent', PARENTS)
def test_grpo_minicpmv2_6(e2e, tiny_model, tmp_path, parent):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    lines, proc, run_dir = e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=2 * len(SIZES))
    print(f'\nE2E {parent}: {e2e.usage(proc)}')
    records = e2e.geometry_log(run_dir)
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        if path not in expected:
            expected[path] = processor_geometry(tiny_model(parent), path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        got = (geo['resized_width'], geo['resized_height'], geo['num_tokens'], geo['num_tiles'],
               geo['tile_rows'] or 0, geo['tile_cols'] or 0)
        assert got == expected[path], path
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    # geo_log: a rollout and a train record per sample, each what the processor did to its file.
    assert sorted(r['mode'] for r in records) == ['rollout'] * 6 + ['train'] * 6
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == parent + '_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens'], r['num_tiles']) == expected[r['image']][:4]
    views = {os.path.basename(p).split('_')[0]: g[3:] for p, g in expected.items()}
    assert views == {'tiny': (1, 0, 0), 'landscape': (3, 1, 2), 'tall': (5, 4, 1)}  # (views, rows, cols)
