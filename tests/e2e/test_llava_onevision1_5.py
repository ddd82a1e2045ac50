"""A real tiny `swift rlhf --rlhf_type grpo` run on ms-swift's LLaVA-OneVision-1.5 template
(``llava_onevision1_5_geo``): the logged geometry and the rewards' geometry are what qwen-vl-utils'
``fetch_image`` and the image processor make of each file. The model is a tiny Qwen2.5-VL (the
checkpoint's own modeling code is remote); the template, its resize and its processor call are real."""
from PIL import Image

from swift_ext.testing.images import make_dataset

PARENT = 'llava_onevision1_5'
SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('wide', 1000, 40))


def test_grpo_llava_onevision1_5(e2e, tiny_model, tmp_path):
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    probed, proc, run_dir = e2e.grpo(tiny_model(PARENT), PARENT, data, tmp_path, batch=2 * len(SIZES))
    print(f'\ngrpo {PARENT}: {e2e.usage(proc)}')
    logged = e2e.geometry_log(run_dir)
    assert {(r['mode'], r['error'], r['mismatch']) for r in logged} == {('rollout', None, None), ('train', None, None)}
    assert len(logged) == 4 * len(SIZES) and len(probed) == 2 * len(SIZES)
    records = logged + [dict(line['geometry'][0], image=line['paths'][0]) for line in probed]
    for rec in records:
        width, height = fetch_image({'image': load_image(rec['image'])}).size
        assert (rec['resized_width'], rec['resized_height']) == (width, height), rec['image']
        assert rec['grid'] == [1, height // 14, width // 14]
        assert rec['num_tokens'] == width * height // 28 ** 2
        assert (rec['original_width'], rec['original_height']) == Image.open(rec['image']).size
    for line in probed:
        assert line['from_template'] == [True] and line['template'] == PARENT + '_geo'
