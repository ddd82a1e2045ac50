"""Qwen2.5-Omni / Qwen3-Omni: images go through qwen_omni_utils.fetch_image, which is qwen-vl-utils'
arithmetic; the limits live on qwen_omni_utils.vision_process (where ms-swift's Omni loaders patch them);
Qwen2.5-Omni resizes at patch 14, Qwen3-Omni at the processor's 16.

The tiny Omni checkpoints (``swift_ext.testing.tiny.qwen_omni``: toy thinker, audio output off, ~16 MB) load
through ms-swift's own Omni loaders."""
import inspect
import os

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.geometry import GeometryError
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract
from swift_ext.testing.tiny import run_flags

qvu = pytest.importorskip('qwen_vl_utils.vision_process')
qou = pytest.importorskip('qwen_omni_utils.v2_5.vision_process')

PATCH = {'qwen2_5_omni': 14, 'qwen3_omni': 16}
IMAGE_PAD = 151655  # <|IMAGE|> (2.5) / <|image_pad|> (3): the same id in both tokenizers


def test_omni_utils_resize_is_qwen_vl_utils_source():
    # qwen-omni-utils 0.0.9 carries qwen-vl-utils 0.0.14's resize code verbatim: same text, same numbers.
    import qwen_omni_utils
    assert qwen_omni_utils.vision_process is qou  # the module ms-swift patches
    for name in ('round_by_factor', 'ceil_by_factor', 'floor_by_factor', 'smart_resize', 'to_rgb', 'fetch_image'):
        assert inspect.getsource(getattr(qou, name)) == inspect.getsource(getattr(qvu, name)), name
    for name in ('MAX_RATIO', 'SPATIAL_MERGE_SIZE', 'IMAGE_MIN_TOKEN_NUM', 'IMAGE_MAX_TOKEN_NUM'):
        assert getattr(qou, name) == getattr(qvu, name), name


def _sizes(seed, n=3000):
    # The rest around multiples of 28 and 32.
    return contract.qwen_sizes(seed, n, lambda rng: (rng.randint(1, 200) * rng.choice((28, 32)) + rng.randint(-2, 2),
                                                     rng.randint(1, 200) * rng.choice((14, 16)) + rng.randint(-2, 2)))


def _resize(module, width, height, factor, min_pixels=None, max_pixels=None):
    try:
        h, w = module.smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    except (ValueError, AssertionError):
        return 'error'
    return 'error' if h <= 0 or w <= 0 else (w, h)


@pytest.mark.parametrize('factor', [28, 32])
def test_omni_smart_resize_equals_qwen_vl_utils(factor):
    sizes = _sizes(seed=factor)
    mismatches = [s for s in sizes if _resize(qou, *s, factor) != _resize(qvu, *s, factor)]
    assert len(sizes) == 3000 and mismatches == []


def _loader_limits(parent, env):
    """Run the real Omni loader's environment step; fetch_image's (min, max) pixels after it."""
    from swift.model.models.qwen import Qwen2_5OmniLoader, Qwen3OmniLoader
    from swift.utils import get_env_args
    loader = Qwen3OmniLoader if parent == 'qwen3_omni' else Qwen2_5OmniLoader
    factor = PATCH[parent] * 2
    saved = dict(os.environ)
    try:
        for name in ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM', 'IMAGE_MIN_TOKEN_NUM', 'SPATIAL_MERGE_SIZE'):
            os.environ.pop(name, None)
        os.environ.update(env)
        object.__new__(loader)._check_qwen_omni_utils()
        # patch_qwen_vl_utils(qwen_omni_utils.vision_process) then reads these (get_env_args).
        max_tokens = get_env_args('image_max_token_num', int, qou.IMAGE_MAX_TOKEN_NUM)
        min_tokens = get_env_args('image_min_token_num', int, qou.IMAGE_MIN_TOKEN_NUM)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return min_tokens * factor ** 2, max_tokens * factor ** 2


ENVS = {'defaults': {}, 'max_pixels': {'MAX_PIXELS': '50176'},
        'max_min_pixels': {'MAX_PIXELS': '1003520', 'MIN_PIXELS': '200000'},
        'token_num_wins': {'MAX_PIXELS': '50176', 'IMAGE_MAX_TOKEN_NUM': '512'}}


@pytest.mark.parametrize('parent', list(PATCH))
@pytest.mark.parametrize('env', list(ENVS), ids=list(ENVS))
def test_predict_equals_omni_smart_resize(parent, env):
    family, _ = family_of(parent)
    assert family.name == 'qwen_omni'
    settings = family.settings_for(parent, env=dict(ENVS[env]))
    factor = PATCH[parent] * 2
    assert settings.factor == factor
    min_pixels, max_pixels = _loader_limits(parent, ENVS[env])
    assert (settings.min_pixels or qou.IMAGE_MIN_TOKEN_NUM * factor ** 2,
            settings.max_pixels or qou.IMAGE_MAX_TOKEN_NUM * factor ** 2) == (min_pixels, max_pixels)
    sizes = _sizes(seed=list(ENVS).index(env))
    mismatches = []
    for w, h in sizes:
        try:
            geo, _ = settings.predict(width=w, height=h)
            ours = geo.resized_width, geo.resized_height
            assert geo.num_tokens == ours[0] * ours[1] // factor ** 2
        except GeometryError:
            ours = 'error'
        if ours != _resize(qou, w, h, factor, min_pixels, max_pixels):
            mismatches.append((w, h))
    assert len(sizes) == 3000 and mismatches == []


def test_coordinates_follow_swift_norm_bbox():
    # Qwen2.5-Omni inherits Qwen2_5VLTemplate's norm_bbox='none' (pixels); Qwen3-Omni sets 'norm1000'.
    from swift.template import TEMPLATE_MAPPING
    conventions = {'none': 'abs', 'norm1000': 'norm1000'}
    for parent in PATCH:
        assert family_of(parent)[1].coords == conventions[TEMPLATE_MAPPING[parent].template_cls.norm_bbox]


# ---------------------------------------------------------------- the tiny checkpoints
def test_tiny_checkpoint_is_small_with_real_ids_and_tied(tiny_model):
    # The ids the Omni configs (transformers' defaults = the public checkpoints) and ms-swift's templates use.
    import transformers as tf
    from safetensors import safe_open

    from swift_ext.testing.tiny import directory_size
    expected = {'qwen2_5_omni': {'<|IMAGE|>': 151655, '<|VIDEO|>': 151656, '<|AUDIO|>': 151646,
                                 '<|vision_bos|>': 151652, '<|vision_eos|>': 151653, '<|im_end|>': 151645},
                'qwen3_omni': {'<|image_pad|>': 151655, '<|video_pad|>': 151656, '<|audio_pad|>': 151675,
                               '<|vision_start|>': 151652, '<|vision_end|>': 151653, '<|audio_start|>': 151669,
                               '<|im_end|>': 151645}}
    for parent, ids in expected.items():
        path = tiny_model(parent)
        assert directory_size(path) < 30 * 1024 * 1024
        with safe_open(os.path.join(path, 'model.safetensors'), 'pt') as f:  # tied: the 151,936-row table once
            tables = [k for k in f.keys() if 'lm_head' in k or 'embed_tokens' in k]
        assert tables == ['thinker.model.embed_tokens.weight']
        proc = tf.AutoProcessor.from_pretrained(path)
        assert {t: proc.tokenizer.convert_tokens_to_ids(t) for t in ids} == ids
        assert proc.tokenizer.convert_tokens_to_ids(proc.image_token) == IMAGE_PAD
        assert (proc.image_processor.patch_size, proc.image_processor.merge_size) == (PATCH[parent], 2)
        thinker = tf.AutoConfig.from_pretrained(path).thinker_config
        assert (thinker.image_token_id, thinker.vision_start_token_id) == (IMAGE_PAD, 151652)
        assert thinker.audio_token_id == proc.tokenizer.convert_tokens_to_ids(proc.audio_token)


def test_tiny_checkpoint_model_type_is_what_swift_detects(tiny_model):
    # make-tiny-model prints --model_type from the TemplateSpec; ms-swift must agree with it.
    from swift.model import get_processor
    for parent in PATCH:
        assert get_processor(tiny_model(parent)).model_info.model_type == run_flags(parent)['model_type']
        assert run_flags(parent)['template'] == parent + '_geo'


def test_tiny_checkpoint_follows_the_seed(tiny_model, tmp_path):
    from swift_ext.testing.tiny import make_tiny_model

    def weights(path):
        with open(os.path.join(path, 'model.safetensors'), 'rb') as f:
            return f.read()
    default = weights(tiny_model('qwen3_omni'))
    assert weights(make_tiny_model('qwen3_omni', str(tmp_path / 'same'))) == default
    assert weights(make_tiny_model('qwen3_omni', str(tmp_path / 'other'), seed=1)) != default


@pytest.fixture(scope='module')
def processors(tiny_processor):
    return {parent: tiny_processor(parent) for parent in PATCH}


@pytest.mark.parametrize('parent', list(PATCH))
def test_encode_identical_and_geometry_is_what_omni_fetch_image_did(processors, sample_images, parent):
    from qwen_omni_utils import fetch_image
    proc = processors[parent]
    parent_tpl, geo_tpl = contract.template(proc, parent), contract.template(proc, parent + '_geo')
    settings = geo_tpl.geo_settings()
    assert settings.patch_size == PATCH[parent]
    paths = [sample_images[n] for n in ('tiny', 'landscape', 'portrait', 'wide')]
    a, b = parent_tpl.encode(contract.sample(paths)), geo_tpl.encode(contract.sample(paths))
    contract.assert_same_encode(a, b)
    grids = b['image_grid_thw'].tolist()
    ids = b['input_ids'].tolist() if isinstance(b['input_ids'], torch.Tensor) else list(b['input_ids'])
    assert ids.count(IMAGE_PAD) == sum(t * h * w // 4 for t, h, w in grids)
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), parent + '_geo')
        w, h = Image.open(path).size
        assert geo == settings.predict(width=w, height=h)[0]
        kwargs = {'image_patch_size': PATCH[parent]} if parent == 'qwen3_omni' else {}
        fetched = fetch_image({'image': path}, **kwargs)
        assert (geo.resized_width, geo.resized_height) == fetched.size
        assert fetched.size == qvu.fetch_image({'image': path}, image_patch_size=PATCH[parent]).size
        assert list(geo.grid) == grids[i]


@pytest.mark.parametrize('parent', list(PATCH))
def test_limits_are_read_from_qwen_omni_utils(processors, sample_images, parent, monkeypatch):
    # MAX_PIXELS=50176 as the Omni loader turns it into tokens on qwen_omni_utils (not qwen_vl_utils).
    factor = PATCH[parent] * 2
    monkeypatch.setattr(qou, 'IMAGE_MAX_TOKEN_NUM', 50176 // factor ** 2)
    tpl = contract.template(processors[parent], parent + '_geo')
    path = sample_images['landscape']
    encoded = tpl.encode(contract.sample([path]))
    geo = STORE.get(image_key(path), (None, None), parent + '_geo')
    expected = {'qwen2_5_omni': (252, 168), 'qwen3_omni': (256, 192)}[parent]
    assert (geo.resized_width, geo.resized_height) == expected
    assert list(geo.grid) == encoded['image_grid_thw'][0].tolist()
    assert tpl.geo_settings().max_pixels == 50176 // factor ** 2 * factor ** 2


@pytest.mark.parametrize('parent', list(PATCH))
def test_tiny_omni_forward_through_swift(processors, sample_images, parent):
    # ms-swift's Omni loader, template, collator and post-encode hook into the tiny thinker: finite logits.
    from swift.model import get_model_processor
    model_dir = processors[parent].model_info.model_dir
    model, proc = get_model_processor(model_dir, model_type=run_flags(parent)['model_type'], device_map='cpu')
    template = contract.template(proc, parent + '_geo')
    output, encoded = contract.forward(model, template, contract.sample([sample_images['landscape']]))
    assert output.logits.shape == (1, len(encoded['input_ids']), 151936)
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss)
