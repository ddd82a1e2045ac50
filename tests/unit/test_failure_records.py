"""A refused image is recorded once per encode attempt, whichever hook of the encode refused it."""
import json

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.geometry import GeometryError
from swift_ext.recorder import recorder


# qwen2_5_vl refuses a 300:1 image in replace_tag (smart_resize), inside the parent's _encode;
# mistral_2503 refuses a 3000x1 image in _encode itself (its side floors to 0).
@pytest.mark.parametrize('parent,size,rule', [
    ('qwen2_5_vl', (600, 2), 'aspect ratio must be at most 200'),
    ('mistral_2503', (3000, 1), 'floors a side to 0'),
])
def test_refused_image_is_recorded_once(tiny_model, tmp_path, log_dir, parent, size, rule):
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    bad = str(tmp_path / 'bad.png')
    Image.new('RGB', size, (200, 30, 30)).save(bad)
    template = get_template(get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type']),
                            template_type=parent + '_geo')
    template.set_mode('train')
    attempts = []  # ms-swift's encode retries a failed encode (retry_decorator): each attempt is an encode
    real = template._encode_truncated
    template._encode_truncated = lambda inputs: attempts.append(1) or real(inputs)
    with pytest.raises(GeometryError, match=rule) as raised:
        template.encode({'messages': [{'role': 'user', 'content': '<image>Where?'},
                                      {'role': 'assistant', 'content': '[1, 2, 3, 4]'}], 'images': [bad]})
    assert bad in str(raised.value)
    recorder().flush()
    lines = (log_dir / 'image_geometry.jsonl').read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert attempts and len(records) == len(attempts), records
    assert all(rule in r['error'] and r['image'] == bad and r['image_index'] == 0 for r in records), records


def test_a_good_image_beside_a_bad_one_is_not_recorded_as_failed(tiny_model, tmp_path, log_dir):
    # A row [448x448 png, truncated jpeg]: every encode attempt notes the bad image only, with its own error.
    from io import BytesIO

    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.callback import step_values
    good, bad = str(tmp_path / 'good.png'), str(tmp_path / 'bad.jpg')
    Image.new('RGB', (448, 448), (20, 200, 30)).save(good)
    buf = BytesIO()
    Image.new('RGB', (640, 480), (200, 30, 30)).save(buf, 'JPEG')
    with open(bad, 'wb') as f:
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
    template = get_template(get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl'),
                            template_type='qwen2_5_vl_geo')
    template.set_mode('train')
    attempts = []
    real = template._encode_truncated
    template._encode_truncated = lambda inputs: attempts.append(1) or real(inputs)
    with pytest.raises(GeometryError, match='bad.jpg'):
        template.encode({'messages': [{'role': 'user', 'content': '<image><image>Both?'},
                                      {'role': 'assistant', 'content': 'no'}], 'images': [good, bad]})
    recorder().flush()
    lines = [json.loads(x) for x in (log_dir / 'image_geometry.jsonl').read_text().splitlines()]
    assert len(lines) == len(attempts) > 1
    assert all((x['image'], x['image_index']) == (bad, 1) and 'truncated' in x['error'] for x in lines), lines
    assert step_values(lines)['failed_images_per_step'] == [1]  # one bad file, however often it was tried
