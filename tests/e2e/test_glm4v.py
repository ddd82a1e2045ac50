"""A real tiny `swift rlhf --rlhf_type grpo` run on GLM-4.1V (``glm4v_geo`` / ``glm4_5v_geo``) and GLM-OCR
(``glm_ocr_geo``): the logged
geometry and the geometry the rewards got equal what transformers' GLM processor makes of each file."""
import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

# Tiny (upscaled), ordinary, and 25:1 (small-side rule), each a different branch of smart_resize.
# Small on purpose: every visual token is a row of 151,552 logits, and 640x480 alone (391 tokens)
# took this run to 6.5 GB.
SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('wide', 1000, 40))


def processor_geometry(processor, path):
    """What the real image processor makes of this file: (resized width, height, grid, tokens)."""
    from swift.template.vision_utils import load_image
    out = processor.image_processor(images=[load_image(path)], return_tensors='pt')
    t, gh, gw = out['image_grid_thw'][0].tolist()
    return gw * 14, gh * 14, [t, gh, gw], t * gh * gw // processor.image_processor.merge_size ** 2


@pytest.mark.parametrize('parent', ['glm4v', 'glm4_5v', 'glm_ocr'])
def test_grpo_glm(e2e, tiny_model, tmp_path, parent):
    from transformers import AutoProcessor
    model_dir = tiny_model('glm_ocr' if parent == 'glm_ocr' else 'glm4v')  # one GLM-4.1V serves two templates
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    probe, proc, run_dir = e2e.grpo(model_dir, parent, data, tmp_path, batch=2 * len(SIZES))
    print(f'\n{parent} GRPO e2e: {e2e.usage(proc)}')
    logged = e2e.geometry_log(run_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    assert len(probe) == 2 * len(SIZES)
    assert {r['mode'] for r in logged} == {'rollout', 'train'} and len(logged) == 4 * len(SIZES)
    expected = {}
    for line in probe:
        path, geo = line['paths'][0], line['geometry'][0]
        expected[path] = processor_geometry(processor, path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['grid'], geo['num_tokens']) == expected[path]
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
        assert line['template'] == parent + '_geo'
    for rec in logged:
        assert rec['error'] is None and rec['mismatch'] is None
        assert (rec['resized_width'], rec['resized_height'], rec['grid'], rec['num_tokens']) == expected[rec['image']]
