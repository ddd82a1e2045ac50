"""ms-swift's pre-rescale (`Template._get_max_pixels`): a row's chat_template_kwargs max_pixels, else
`--max_pixels`, for every template but Qwen's, which read only `--max_pixels` (the row's value goes to
fetch_image). The families mirror that with one flag; these tests pin it to ms-swift and to real encodes."""
import pytest
from PIL import Image

import swift_ext
import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import describe, family_of
from swift_ext.images import image_key
from swift_ext.store import STORE, reset, row_limits_key


@pytest.mark.parametrize('template', [r['template'] for r in describe()])
def test_row_max_pixels_flag_is_what_the_parent_template_does(template):
    from swift.template import TEMPLATE_MAPPING, Template
    family, spec = family_of(template)
    parent_cls = TEMPLATE_MAPPING[spec.parent].template_cls
    reads_row = parent_cls._get_max_pixels is Template._get_max_pixels
    assert family.row_max_pixels_rescales == reads_row, (template, parent_cls.__name__)


@pytest.mark.parametrize('parent', ['llava1_6_mistral_hf', 'llava_onevision_hf', 'pixtral'])
def test_row_max_pixels_prerescales_the_real_encode(tiny_model, tmp_path, parent):
    # The row's limit changes what the parent encodes; the record and the prediction follow it.
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    reset()
    path = str(tmp_path / 'photo.png')
    Image.new('RGB', (1000, 600), (120, 90, 60)).save(path)
    template = get_template(get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type']),
                            template_type=parent + '_geo')
    template.set_mode('train')
    row = {'max_pixels': 60000}
    template.encode({'messages': [{'role': 'user', 'content': '<image>Where?'}], 'images': [path],
                     'chat_template_kwargs': row})
    recorded = STORE.get(image_key(path), row_limits_key(row), parent + '_geo')
    with_row = swift_ext.predict_geometry(parent + '_geo', width=1000, height=600, row_kwargs=row, env={})
    without = swift_ext.predict_geometry(parent + '_geo', width=1000, height=600, env={})
    assert recorded == with_row
    assert with_row != without
