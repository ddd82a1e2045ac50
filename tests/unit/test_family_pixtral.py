"""Pixtral / Mistral 3 family: the prediction equals transformers' own resize arithmetic on thousands
of sizes, and a real encode through each `_geo` template is byte-identical to its ms-swift parent
and records what the Pixtral processor really produced (``image_sizes``, the [IMG] token grid)."""
import functools
import random

import numpy as np
import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named
from swift_ext.families.pixtral import image_token_grids, pixtral_resize
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, prompt='Where is the box?')

MISTRAL = ('mistral_2503', 'mistral_2506', 'mistral_2512', 'mistral_2512_thinking')
# (longest_edge, token patch): Mistral 3 (14 x merge 2), Pixtral-12B (16), and off-default checkpoints.
SETTINGS = [(1540, 28), (1024, 16), (896, 28), (512, 16), (100, 28)]


def _sizes(n, seed):
    """Random (width, height): log-uniform sides, with extreme ratios, tiny sides and limit boundaries."""
    rng = random.Random(seed)
    out = [(1, 1), (1, 5000), (5000, 1), (1540, 1540), (1541, 1540), (1540, 1541), (28, 28), (29, 27)]
    for _ in range(n):
        kind = rng.random()
        if kind < 0.1:  # around the limits and patch multiples
            base = rng.choice([1024, 1540, 896, 512, 100, 28, 16, 56])
            out.append((base + rng.randint(-3, 3) or 1, rng.randint(1, 3000)))
        elif kind < 0.2:  # extreme aspect ratios
            out.append((rng.randint(1, 20), rng.randint(500, 8000))[::rng.choice([1, -1])])
        else:
            out.append((int(10 ** rng.uniform(0, 3.9)), int(10 ** rng.uniform(0, 3.9))))
    return [(max(1, w), max(1, h)) for w, h in out]


def _hf_resize(width, height, edge, patch):
    from transformers.image_utils import ChannelDimension
    from transformers.models.pixtral.image_processing_pixtral import get_resize_output_image_size
    image = np.broadcast_to(np.zeros(1, np.uint8), (height, width, 3))  # a shape, no pixels
    h, w = get_resize_output_image_size(image, size=(edge, edge), patch_size=(patch, patch),
                                        input_data_format=ChannelDimension.LAST)
    return w, h


@pytest.mark.parametrize('edge,patch', SETTINGS)
def test_resize_parity_with_transformers(edge, patch):
    # 2,000 sizes per setting, 10,000 in all: identical (width, height), zero sides included.
    sizes = _sizes(2000, seed=edge * patch)
    mismatches = [(w, h) for w, h in sizes
                  if pixtral_resize(width=w, height=h, max_width=edge, max_height=edge, token_patch=patch)
                  != _hf_resize(w, h, edge, patch)]
    assert mismatches == [], mismatches[:10]


@pytest.mark.parametrize('parent,size,clamp', [
    ('pixtral', (30, 30), None),  # never scaled up: ceiled to 32x32, the model's own rounding
    ('pixtral', (1024, 768), None),
    ('pixtral', (4000, 3000), Clamp.LONGEST_EDGE),
    ('mistral_2503', (3000, 50), Clamp.LONGEST_EDGE),
    ('mistral_2503', (1540, 100), None),
])
def test_clamp_names_what_the_resize_did(parent, size, clamp):
    settings = default_settings(parent + '_geo')
    real = _hf_resize(*size, settings.max_width, settings.token_patch)
    geo, clamped = settings.predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == real and clamped == clamp
    # Shrunk (beyond the ceil to a patch) exactly where the longest edge was over the limit.
    assert (clamped == Clamp.LONGEST_EDGE) == (max(size) > settings.max_width)


@pytest.mark.parametrize('parent,edge,patch,merge', [('mistral_2503', 1540, 14, 2), ('pixtral', 1024, 16, 1)])
def test_predict_tokens_equal_processor_count(parent, edge, patch, merge):
    # transformers' PixtralProcessor._get_num_multimodal_tokens: (cols + 1) * rows, per size.
    import transformers as tf

    from swift_ext.testing.tiny.pixtral import tokenizer
    proc = tf.PixtralProcessor(image_processor=tf.PixtralImageProcessor(size={'longest_edge': edge}),
                               tokenizer=tokenizer(parent), patch_size=patch, spatial_merge_size=merge)
    family = family_named('pixtral')
    settings = family.default_settings(parent)
    # Heights 1 and 3 left out: this counter builds np.zeros((h, w, 3)) and transformers then reads
    # a (1|3, w, 3) array as channels-first (its "ambiguous channel dimension" warning); a real encode
    # gets a PIL image and never meets that ambiguity.
    sizes = [s for s in _sizes(1000, seed=7) if min(_hf_resize(*s, edge, patch * merge)) > 0 and s[1] not in (1, 3)]
    expected = proc._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])['num_image_tokens']
    got = [settings.predict(width=w, height=h)[0].num_tokens for w, h in sizes]
    assert got == expected


@pytest.mark.parametrize('size', [(5000, 1), (1, 3000), (4000, 2)])
def test_zero_side_is_refused(size):
    # transformers floors the short side to 0 here; ms-swift's template then has no token to write.
    w, h = size
    assert 0 in _hf_resize(w, h, 1540, 28)
    with pytest.raises(GeometryError, match=r'floors a side to 0'):
        family_named('pixtral').default_settings('mistral_2503').predict(width=w, height=h, name='thin.png')


def test_every_template_on_the_classes_is_covered():
    # Every ms-swift 4.6 template on Mistral2503Template / PixtralTemplate has a `_geo` twin here.
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.mistral import Mistral2503Template
    from swift.template.templates.pixtral import PixtralTemplate
    parents = contract.parents_on_class(Mistral2503Template, PixtralTemplate)
    assert parents == set(MISTRAL) | {'pixtral'}
    assert all(p + '_geo' in TEMPLATE_MAPPING for p in parents)


def test_image_token_grids():
    # [IMG]=10, [IMG_BREAK]=12, [IMG_END]=13: two images of 2x3 and 1x1 between text.
    ids = [1, 3, 10, 10, 10, 12, 10, 10, 10, 13, 5, 10, 13, 4]
    assert image_token_grids(ids, 10, 12, 13) == [(2, 3), (1, 1)]


# --------------------------------------------------------------------------- real encodes
@pytest.fixture(scope='module')
def checkpoints(tiny_model):
    return {p: tiny_model(p) for p in ('mistral_2503', 'pixtral')}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    sizes = [(50, 60), (640, 480), (2000, 300), (300, 1700), (1000, 40), (29, 1541)]
    return contract.write_images(tmp_path_factory.mktemp('pixtral_images'), sizes)


def _template(checkpoints, name, **kwargs):
    from swift.model import get_processor
    from swift.template import get_template
    parent = name[:-4] if name.endswith('_geo') else name
    model_type = 'pixtral' if parent == 'pixtral' else 'mistral3'
    proc = get_processor(checkpoints['pixtral' if parent == 'pixtral' else 'mistral_2503'], model_type=model_type)
    tpl = get_template(proc, template_type=name, **kwargs)
    tpl.set_mode('train')
    return tpl


@pytest.mark.parametrize('parent', MISTRAL + ('pixtral',))
def test_encode_identical_and_recorded(checkpoints, images, parent):
    parent_tpl, geo_tpl = _template(checkpoints, parent), _template(checkpoints, parent + '_geo')
    proc = geo_tpl.processor
    settings = geo_tpl.geo_settings()
    for group in ([(640, 480)], [(50, 60), (2000, 300)], [(300, 1700), (1000, 40), (29, 1541)]):
        paths = [images[s] for s in group]
        expected, encoded = parent_tpl.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(expected, encoded)
        # Independent of the family: the processor's own resize, and the [IMG] grid in the ids.
        grids = image_token_grids(encoded['input_ids'], proc.image_token_id, proc.image_break_token_id,
                                  proc.image_end_token_id)
        for i, (size, path) in enumerate(zip(group, paths, strict=True)):
            geo = STORE.get(image_key(path), (None, None), parent + '_geo')
            predicted, _ = settings.predict(width=size[0], height=size[1])
            real = proc.image_processor([Image.open(path).convert('RGB')], patch_size=settings.token_patch,
                                        return_tensors='pt')['image_sizes'][0].tolist()
            rows, cols = grids[i]
            assert geo == predicted
            assert (geo.original_width, geo.original_height) == size
            assert [geo.resized_height, geo.resized_width] == real == encoded['image_sizes'][i].tolist()
            assert (rows * settings.token_patch, cols * settings.token_patch) == tuple(real)
            assert geo.num_tokens == rows * (cols + 1)


def test_zero_side_refused_by_the_real_encode(checkpoints, tmp_path):
    # The parent fails inside the image processor (a 0-pixel resize); the `_geo` twin says why.
    path = str(tmp_path / 'thin_5000x1.png')
    Image.new('RGB', (5000, 1)).save(path)
    with pytest.raises(ValueError, match='Size must contain'):
        _template(checkpoints, 'mistral_2503').encode(_sample([path]))
    with pytest.raises(GeometryError, match=r'thin_5000x1.png: fitting 5000x1 .* floors a side to 0'):
        _template(checkpoints, 'mistral_2503_geo').encode(_sample([path]))


def test_swift_max_pixels_prerescale(checkpoints, images):
    # `--max_pixels 50176` shrinks 2000x300 with ms-swift's rescale_image before the processor.
    from swift.template.vision_utils import load_image, rescale_image
    tpl = _template(checkpoints, 'mistral_2503_geo', max_pixels=50176)
    path = images[(2000, 300)]
    encoded = tpl.encode(_sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'mistral_2503_geo')
    shrunk = rescale_image(load_image(path), 50176)
    real = tpl.processor.image_processor([shrunk], patch_size=28, return_tensors='pt')['image_sizes'][0].tolist()
    assert geo == tpl.geo_settings().predict(width=2000, height=300)[0]
    assert [geo.resized_height, geo.resized_width] == real == encoded['image_sizes'][0].tolist()
    assert (geo.original_width, geo.original_height) == (2000, 300)


def test_settings_from_checkpoint(checkpoints):
    # The live processor's limits, not the defaults: a 896-edge checkpoint predicts 896.
    tpl = _template(checkpoints, 'mistral_2503_geo')
    tpl.processor.image_processor.size = {'longest_edge': 896}
    tpl.__dict__.pop('_geo_settings_cache', None)
    settings = tpl.geo_settings()
    assert (settings.max_width, settings.max_height, settings.token_patch) == (896, 896, 28)
    geo, clamped = settings.predict(width=2000, height=300)
    assert (geo.resized_width, geo.resized_height, clamped) == (896, 140, Clamp.LONGEST_EDGE)
