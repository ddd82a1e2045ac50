"""A real tiny `swift rlhf --rlhf_type grpo` run on PaddleOCR-VL 1.5 (``paddle_ocr_1_5_geo``): the logged
geometry and the geometry the rewards got equal what transformers' PaddleOCR-VL processor makes of each
file, a row's ``chat_template_kwargs`` size limits included."""
from PIL import Image

# ms-swift 4.6.0's PaddleOCR1_5Template._post_encode calls `.to()` on `get_image_features(...).pooler_output`,
# which transformers 5.19 returns as a tuple (one tensor per image): the first training forward raises.
# Rollout, rewards and the training encodes all come before it, so all of their geometry is checked.
UPSTREAM_BUG = 'in _post_encode\n    image_embeds = image_embeds.to(inputs_embeds.device, inputs_embeds.dtype)'
# Every size below PaddleOCR-VL-1.5's 112896-pixel floor is upscaled, so these stay ~150-200 tokens.
SIZES = (('tiny', 50, 60), ('landscape', 640, 480), ('wide', 1000, 40))
ROWS = {'landscape': {'chat_template_kwargs': {'shortest_edge': 1000, 'longest_edge': 50176}}}


def processor_geometry(processor, path, row):
    """What the real image processor makes of this file under the row's limits, as ms-swift calls it."""
    from swift.template.vision_utils import load_image
    size = {k: v for k, v in (row or {}).items() if k in ('shortest_edge', 'longest_edge') and v}
    out = processor.image_processor(images=[load_image(path)], return_tensors='pt', **({'size': size} if size else {}))
    t, gh, gw = out['image_grid_thw'][0].tolist()
    return gw * 14, gh * 14, [t, gh, gw], t * gh * gw // 4


def test_grpo_paddle_ocr(e2e, tiny_model, tmp_path):
    from transformers import AutoProcessor
    model_dir = tiny_model('paddle_ocr_1_5')
    data = e2e.dataset(tmp_path / 'data', SIZES, fields=ROWS)
    probe, proc, run_dir = e2e.grpo(model_dir, 'paddle_ocr_1_5', data, tmp_path, batch=2 * len(SIZES), check=False)
    print(f'\npaddle_ocr_1_5 GRPO e2e: rc {proc.returncode}, {e2e.usage(proc)}')
    # Strict: once ms-swift / transformers fix the bug this fails, and the run must then exit 0.
    error = e2e.traceback(proc.stdout + proc.stderr, limit=None) if proc.returncode else ''
    assert UPSTREAM_BUG in error and "AttributeError: 'tuple' object has no attribute 'to'" in error, error
    logged = e2e.geometry_log(run_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    assert len(probe) == 2 * len(SIZES)
    assert {r['mode'] for r in logged} == {'rollout', 'train'} and len(logged) == 4 * len(SIZES)
    expected = {}
    for line in probe:
        path, geo = line['paths'][0], line['geometry'][0]
        expected[path] = processor_geometry(processor, path, line['row'])
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['grid'], geo['num_tokens']) == expected[path]
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    limited = [x for x in probe if 'landscape' in x['paths'][0]]
    assert limited[0]['row'] == ROWS['landscape']['chat_template_kwargs']
    assert limited[0]['geometry'][0]['resized_width'] == 252  # not the default 644
    for rec in logged:
        assert rec['error'] is None and rec['mismatch'] is None
        assert (rec['resized_width'], rec['resized_height'], rec['grid'], rec['num_tokens']) == expected[rec['image']]
