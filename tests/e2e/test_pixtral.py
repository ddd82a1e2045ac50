"""Real `swift rlhf --rlhf_type grpo` runs on tiny Mistral 3 and Pixtral checkpoints: the geometry the
rewards receive and the `geo_log` records equal what the Pixtral processor makes of each file."""
import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

# 2000x300 is cut to the 1540 (Mistral 3) / 1024 (Pixtral) edge; the others are only rounded up.
SIZES = [('tiny', 50, 60), ('wide', 1000, 40), ('big', 2000, 300), ('portrait', 300, 500)]
# ms-swift 4.6's Mistral2503Template / PixtralTemplate concatenate `pixel_values` as they are, so a
# batch cannot hold two resized sizes: one prompt (x 2 generations) a step, one step per image.


def processor_geometry(model_dir, parent, path):
    """(resized width, height, tokens) the checkpoint's own processor gives the file, as ms-swift loads it."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    patch = proc.patch_size * (1 if parent == 'pixtral' else proc.spatial_merge_size)
    height, width = proc.image_processor([load_image(path)], patch_size=patch, return_tensors='pt')['image_sizes'][0]
    rows, cols = int(height) // patch, int(width) // patch
    return int(width), int(height), rows * (cols + 1)


@pytest.mark.parametrize('parent', ['mistral_2503', 'pixtral'])
def test_grpo_pixtral_family(e2e, tiny_model, tmp_path, parent):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    lines, proc, run_dir = e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=2, steps=len(SIZES))
    print(f'\nE2E {parent}: {e2e.usage(proc)}')
    records = e2e.geometry_log(run_dir)
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        if path not in expected:
            expected[path] = processor_geometry(tiny_model(parent), parent, path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['num_tokens']) == expected[path], path
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    # geo_log: a rollout and a train record per sample, each what the processor did to its file.
    assert sorted(r['mode'] for r in records) == ['rollout'] * 8 + ['train'] * 8
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == parent + '_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens']) == expected[r['image']], r
    big = [g for p, g in expected.items() if 'big_' in p][0]
    assert big[:2] == ((1540, 252) if parent == 'mistral_2503' else (1024, 160))
