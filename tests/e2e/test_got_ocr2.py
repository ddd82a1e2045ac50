"""A real `swift rlhf --rlhf_type grpo` run on a tiny GOT-OCR 2.0 (`got_ocr2_hf`): the template makes the pixels
in its collator; the geometry the rewards receive and the `geo_log` records equal what its processor makes of
each file, and each training record has its step."""
from PIL import Image

from swift_ext.testing.images import make_dataset

SIZES = [('tiny', 50, 60), ('big', 2000, 300)]


def processor_geometry(model_dir, path):
    """(resized width, height) of the processor call ms-swift's collator makes."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    height, width = proc([load_image(path)], return_tensors='pt')['pixel_values'].shape[-2:]
    return int(width), int(height)


def test_grpo_got_ocr2(e2e, tiny_model, tmp_path):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    # Two steps of one prompt (x 2 generations): 1024 x 1024 pixels are the cost here.
    lines, proc, run_dir = e2e.grpo(tiny_model('got_ocr2_hf'), 'got_ocr2_hf', data, tmp_path, batch=2, steps=2)
    print(f'\nE2E got_ocr2_hf: {e2e.usage(proc)}')
    records = e2e.geometry_log(run_dir)
    assert len(lines) == 2 * len(SIZES)
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        expected.setdefault(path, processor_geometry(tiny_model('got_ocr2_hf'), path))
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height']) == expected[path] == (1024, 1024)
        assert geo['num_tokens'] == 256 and line['from_template'] == [True]
    assert sorted(r['mode'] for r in records) == ['rollout'] * 4 + ['train'] * 4
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == 'got_ocr2_hf_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens']) == (*expected[r['image']], 256), r
    assert {r['step'] for r in records if r['mode'] == 'train'} == {1, 2}
