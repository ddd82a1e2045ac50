"""A real tiny `swift rlhf --rlhf_type grpo` run on HunyuanOCR (``hunyuan_ocr_geo``), with the processor attribute
ms-swift 4.6.0's template reads and transformers 5.19 lacks (``pad_id``) supplied by a test plugin: the rollout,
its rewards and the training encodes record what transformers' HunYuanVL processor makes of each file; the first
training forward then stops on a second upstream mismatch (below)."""
import os

from PIL import Image

# ms-swift 4.6.0's HunYuanVLTemplate._post_encode reads `base_model.model.embed_tokens` and `base_model.vit`, the
# layout of Tencent's first model code; transformers 5.19's HunYuanVLModel has `language_model` and `visual`.
UPSTREAM_BUG = "AttributeError: 'HunYuanVLModel' object has no attribute 'embed_tokens'"
PAD_ID_PLUGIN = os.path.join(os.path.dirname(__file__), 'plugins', 'hunyuan_pad_id.py')
SIZES = (('tiny', 50, 60), ('landscape', 640, 480))  # under HunyuanOCR's 512 x 512 floor: ~300 tokens each


def processor_geometry(processor, path):
    """What transformers' HunYuanVL image processor makes of this file, and the template's token count."""
    from swift.template.vision_utils import load_image
    t, gh, gw = processor.image_processor(images=[load_image(path)], return_tensors='pt')['image_grid_thw'][0].tolist()
    return gw * 16, gh * 16, [t, gh, gw], (gh // 2) * (gw // 2 + 1) + 2


def test_grpo_hunyuan_ocr_with_pad_id_supplied(e2e, tmp_path):
    from transformers import AutoProcessor

    from swift_ext.testing.tiny import hunyuan_vl
    model_dir = str(tmp_path / 'tiny-hunyuan_ocr')
    hunyuan_vl.build('hunyuan_ocr', model_dir, 0)
    data = e2e.dataset(tmp_path / 'data', SIZES)
    probe, proc, run_dir = e2e.grpo(model_dir, 'hunyuan_ocr', data, tmp_path, batch=2 * len(SIZES), check=False,
                                    plugins=[PAD_ID_PLUGIN, e2e.PROBE], extra=['--max_length', '4096'])
    print(f'\nhunyuan_ocr GRPO e2e: rc {proc.returncode}, {e2e.usage(proc)}')
    # Strict: once ms-swift / transformers fix this the run goes on, and this test must then expect exit 0.
    error = e2e.traceback(proc.stdout + proc.stderr, limit=None) if proc.returncode else ''
    assert UPSTREAM_BUG in error and 'in _post_encode' in error, error
    processor = AutoProcessor.from_pretrained(model_dir)
    assert len(probe) == 2 * len(SIZES)
    expected = {}
    for line in probe:
        path, geo = line['paths'][0], line['geometry'][0]
        expected[path] = processor_geometry(processor, path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['grid'], geo['num_tokens']) == expected[path]
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    logged = e2e.geometry_log(run_dir)
    assert {r['mode'] for r in logged} == {'rollout', 'train'} and len(logged) == 4 * len(SIZES)
    for rec in logged:
        assert rec['error'] is None and rec['mismatch'] is None and rec['basis'] == 'encode'
        assert (rec['resized_width'], rec['resized_height'], rec['grid'], rec['num_tokens']) == expected[rec['image']]
