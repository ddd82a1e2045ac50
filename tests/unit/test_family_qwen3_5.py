"""Qwen3.5 / Qwen3.8 / OvisOCR2 (ms-swift's Qwen3_5Template and its subclasses): predictions equal
qwen-vl-utils' smart_resize at patch 16, limits come from the environment as ms-swift's loaders set
them, and each `_geo` template encodes byte-identically to its parent and records what fetch_image did."""
import os
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.geometry import GeometryError
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract

qvu = pytest.importorskip('qwen_vl_utils.vision_process')

GENERATIVE = ['qwen3_5', 'qwen3_8', 'ovis_ocr2']
EMBEDDING = ['qwen3_5_emb', 'wemm_embedding']
PARENTS = GENERATIVE + EMBEDDING
IMAGE_PAD = 248056
FACTOR = 32  # patch 16 x merge 2


def test_every_template_on_the_qwen3_5_class_is_covered_or_excluded():
    # Enumerated from ms-swift itself, so a new template on the class fails here until decided.
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.qwen import Qwen3_5Template
    on_class = {name for name, meta in TEMPLATE_MAPPING.items()
                if issubclass(meta.template_cls, Qwen3_5Template) and not name.endswith('_geo')}
    # Decision (scoring) templates: clef refuses images, jev renders no image tag, omnijev composes
    # the images into new frames before resizing; none writes a completion to score.
    excluded = {'clef', 'jev', 'omnijev'}
    assert on_class == set(PARENTS) | excluded
    for parent in PARENTS:
        family, spec = family_of(parent)
        assert family.name == 'qwen' and spec.coords == 'norm1000'
        assert TEMPLATE_MAPPING[parent].template_cls.image_token_id == IMAGE_PAD


def _sizes(seed=0, n=3000):
    """Seeded sizes: uniform, tiny, extreme aspect ratios around 200:1, and factor/limit boundaries."""
    return contract.qwen_sizes(seed, n, lambda rng: (rng.randint(1, 200) * FACTOR + rng.randint(-17, 17),
                                                     rng.randint(1, 300) * 16 + rng.randint(-1, 1)))


def _library(width, height, min_pixels, max_pixels):
    try:
        h, w = qvu.smart_resize(height, width, factor=FACTOR, min_pixels=min_pixels, max_pixels=max_pixels)
    except (ValueError, AssertionError):
        return 'error'
    return 'error' if h <= 0 or w <= 0 else (w, h)


def _predicted(settings, width, height, row=None):
    try:
        geo, _ = settings.predict(width=width, height=height, row_kwargs=row or {})
    except GeometryError:
        return 'error'
    assert geo.grid == (1, geo.resized_height // 16, geo.resized_width // 16)
    assert geo.num_tokens == geo.resized_width * geo.resized_height // FACTOR ** 2
    return geo.resized_width, geo.resized_height


def _swift_env(loader_cls, env):
    """Run the real ms-swift loader's environment step; return fetch_image's (min, max) pixels."""
    from swift.utils import get_env_args
    saved = dict(os.environ)
    try:
        for name in ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM', 'IMAGE_MIN_TOKEN_NUM', 'SPATIAL_MERGE_SIZE'):
            os.environ.pop(name, None)
        os.environ.update(env)
        object.__new__(loader_cls)._check_qwen_vl_utils()
        # patch_qwen_vl_utils then sets vision_process.IMAGE_*_TOKEN_NUM from these (get_env_args).
        max_tokens = get_env_args('image_max_token_num', int, qvu.IMAGE_MAX_TOKEN_NUM)
        min_tokens = get_env_args('image_min_token_num', int, qvu.IMAGE_MIN_TOKEN_NUM)
    finally:  # the loader writes os.environ directly (setdefault), so restore by hand
        os.environ.clear()
        os.environ.update(saved)
    return min_tokens * FACTOR ** 2, max_tokens * FACTOR ** 2


ENVS = {
    'defaults': {},
    'max_pixels': {'MAX_PIXELS': '50176'},
    'max_min_pixels': {'MAX_PIXELS': '1003520', 'MIN_PIXELS': '200000'},
    'token_num_wins': {'MAX_PIXELS': '50176', 'IMAGE_MAX_TOKEN_NUM': '512'},
    'min_token_num': {'IMAGE_MIN_TOKEN_NUM': '64'},
}


@pytest.mark.parametrize('parent', ['qwen3_5', 'qwen3_5_emb'])
@pytest.mark.parametrize('env', list(ENVS), ids=list(ENVS))
def test_predict_equals_smart_resize_under_swift_environment(parent, env):
    # settings_for(env) gives the limits ms-swift's own loader step gives, and predict then equals
    # qwen-vl-utils' smart_resize at factor 32 for 3000 sizes, errors exactly where it fails.
    from swift.model.models.qwen import Qwen3_5EmbLoader, Qwen3_5Loader
    loader = Qwen3_5EmbLoader if parent == 'qwen3_5_emb' else Qwen3_5Loader
    family, _ = family_of(parent)
    settings = family.settings_for(parent, env=dict(ENVS[env]))
    min_pixels, max_pixels = _swift_env(loader, ENVS[env])
    default_min, default_max = qvu.IMAGE_MIN_TOKEN_NUM * FACTOR ** 2, qvu.IMAGE_MAX_TOKEN_NUM * FACTOR ** 2
    assert (settings.min_pixels or default_min, settings.max_pixels or default_max) == (min_pixels, max_pixels)
    sizes = _sizes(seed=list(ENVS).index(env))
    mismatches = [(w, h) for w, h in sizes
                  if _predicted(settings, w, h) != _library(w, h, min_pixels, max_pixels)]
    assert len(sizes) == 3000 and mismatches == []


def test_embedding_loader_ignores_max_pixels():
    # The embedding loader sets IMAGE_MAX_TOKEN_NUM=1800 first, so MAX_PIXELS never becomes tokens.
    from swift.model.models.qwen import Qwen3_5EmbLoader
    _, max_pixels = _swift_env(Qwen3_5EmbLoader, {'MAX_PIXELS': '50176'})
    family, _ = family_of('qwen3_5_emb')
    assert max_pixels == 1800 * FACTOR ** 2
    assert family.settings_for('qwen3_5_emb', env={'MAX_PIXELS': '50176'}).max_pixels == max_pixels
    assert family.settings_for('qwen3_5', env={'MAX_PIXELS': '50176'}).max_pixels == 49 * FACTOR ** 2


def test_row_limits_and_swift_prerescale_match_the_libraries():
    # A row's chat_template_kwargs go to fetch_image; --max_pixels first shrinks with rescale_image.
    from swift.template.vision_utils import rescale_image
    family, _ = family_of('qwen3_5')
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        w, h = rng.randint(16, 3000), rng.randint(16, 3000)
        row = {'max_pixels': rng.randint(4, 4000) * FACTOR ** 2}
        plain = family.settings_for('qwen3_5', env={})
        assert _predicted(plain, w, h, row) == _library(w, h, None, row['max_pixels'])
        swift_max = rng.randint(1000, 400000)
        capped = family.settings_for('qwen3_5', env={}, swift_max_pixels=swift_max)
        sw, sh = rescale_image(Image.new('RGB', (w, h)), swift_max).size
        assert _predicted(capped, w, h) == _library(sw, sh, None, None)
        checked += 2
    assert checked == 600


# ------------------------------------------------------------------------- real encodes
@pytest.fixture(scope='module')
def processor(tiny_processor):
    return tiny_processor('qwen3_5')


def test_tiny_checkpoint_has_the_real_token_ids(processor, tiny_model):
    import json
    tok = processor.tokenizer
    assert len(tok) == 248070
    ids = {t: tok.convert_tokens_to_ids(t) for t in ('<|endoftext|>', '<|im_start|>', '<|im_end|>',
                                                     '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>',
                                                     '<|image_pad|>', '<|video_pad|>', '<think>')}
    assert ids == {'<|endoftext|>': 248044, '<|im_start|>': 248045, '<|im_end|>': 248046,
                   '<|vision_start|>': 248053, '<|vision_end|>': 248054, '<|vision_pad|>': 248055,
                   '<|image_pad|>': 248056, '<|video_pad|>': 248057, '<think>': 248068}
    with open(os.path.join(tiny_model('qwen3_5'), 'config.json')) as f:
        config = json.load(f)
    assert config['architectures'] == ['Qwen3_5ForConditionalGeneration']
    assert config['text_config']['vocab_size'] == 248320
    assert (config['image_token_id'], config['video_token_id']) == (248056, 248057)
    assert processor.image_processor.patch_size == 16


@pytest.mark.parametrize('parent', PARENTS)
def test_encode_identical_and_geometry_is_what_fetch_image_did(processor, sample_images, parent):
    from qwen_vl_utils import fetch_image
    parent_tpl, geo_tpl = contract.template(processor, parent), contract.template(processor, parent + '_geo')
    settings = geo_tpl.geo_settings()
    assert (settings.patch_size, settings.max_pixels) == (16, qvu.IMAGE_MAX_TOKEN_NUM * FACTOR ** 2)
    names = ['tiny', 'landscape', 'wide']
    paths = [sample_images[n] for n in names]
    a, b = parent_tpl.encode(contract.sample(paths)), geo_tpl.encode(contract.sample(paths))
    contract.assert_same_encode(a, b)
    grids = b['image_grid_thw'].tolist()
    runs = _runs(b['input_ids'], IMAGE_PAD)
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), parent + '_geo')
        w, h = Image.open(path).size
        predicted, _ = settings.predict(width=w, height=h)
        assert geo == predicted
        assert (geo.resized_width, geo.resized_height) == fetch_image({'image': path}, image_patch_size=16).size
        assert list(geo.grid) == grids[i]
        assert geo.num_tokens == runs[i]


def test_env_limit_reaches_the_geo_settings(processor, sample_images, monkeypatch):
    # MAX_PIXELS as ms-swift's loader applies it: qwen-vl-utils' IMAGE_MAX_TOKEN_NUM = 50176 // 32**2.
    monkeypatch.setattr(qvu, 'IMAGE_MAX_TOKEN_NUM', 50176 // FACTOR ** 2)
    tpl = contract.template(processor, 'qwen3_5_geo')
    path = sample_images['landscape']
    encoded = tpl.encode(contract.sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'qwen3_5_geo')
    assert (geo.resized_width, geo.resized_height) == (256, 192)
    assert list(geo.grid) == encoded['image_grid_thw'][0].tolist()
    assert tpl.geo_settings().max_pixels == 49 * FACTOR ** 2


def _runs(ids, token):
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    runs, n = [], 0
    for t in ids + [None]:
        if t == token:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


# ----------------------------------------------------------------------- the tiny recipe
def test_tiny_checkpoint_is_small_and_deterministic(tiny_model, tmp_path):
    from swift_ext.testing.tiny import make_tiny_model
    first = tiny_model('qwen3_5')
    total = sum(os.path.getsize(os.path.join(first, name)) for name in os.listdir(first))
    assert total < 30 * 1024 * 1024
    again = make_tiny_model('qwen3_5', str(tmp_path / 'again'))
    for name in ('model.safetensors', 'tokenizer.json', 'config.json', 'preprocessor_config.json'):
        with open(os.path.join(first, name), 'rb') as a, open(os.path.join(again, name), 'rb') as b:
            assert a.read() == b.read(), name


def test_forward_through_swift_gives_finite_logits(tiny_model, sample_images):
    # ms-swift's loader, template, collator and post-encode hook into Qwen3_5ForConditionalGeneration,
    # whose Gated-DeltaNet layer runs transformers' PyTorch fallback on CPU.
    from swift.model import get_model_processor
    model, proc = get_model_processor(tiny_model('qwen3_5'), model_type='qwen3_5', device_map='cpu')
    assert type(model).__name__ == 'Qwen3_5ForConditionalGeneration' and model.dtype == torch.float32
    assert model.config.text_config.layer_types == ['linear_attention', 'full_attention']
    template = contract.template(proc, 'qwen3_5_geo')
    output, encoded = contract.forward(model, template, contract.sample([sample_images['landscape']]))
    assert output.logits.shape == (1, len(encoded['input_ids']), 248320)
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss)
