"""PaliGemma family: every image is the checkpoint's square (224 / 448 / 896) with its fixed token count, as the
real SigLIP image processor makes it; a real encode through `paligemma_geo` is byte-identical to ms-swift's
`paligemma` and records what the processor did."""
import functools
import random

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named
from swift_ext.geometry import Clamp, fit_clamp
from swift_ext.images import image_key
from swift_ext.recorder import recorder
from swift_ext.store import STORE
from swift_ext.testing import contract

_template = functools.partial(contract.checkpoint_template, model_type='paligemma')
_sample = functools.partial(contract.sample, prompt='detect car', answer='<loc0020><loc0010><loc0400><loc0300> car')

SIZES = [(1, 1), (1, 3000), (3000, 1), (50, 60), (224, 224), (223, 225), (640, 480), (2000, 300), (300, 1700),
         (896, 896), (4000, 3000)]


def _random_sizes(n, seed):
    rng = random.Random(seed)
    return [(max(1, int(10 ** rng.uniform(0, 4))), max(1, int(10 ** rng.uniform(0, 4)))) for _ in range(n)]


@pytest.fixture(scope='module')
def checkpoint(tiny_model):
    return tiny_model('paligemma')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    sizes = [(50, 60), (640, 480), (2000, 300), (300, 1700)]
    return contract.write_images(tmp_path_factory.mktemp('paligemma_images'), sizes)


def _recorded(path, template='paligemma_geo', limits=(None, None)):
    recorder().resolve()
    return STORE.get(image_key(path), limits, template)


# ------------------------------------------------------------------------------ arithmetic
def test_prediction_is_the_square_whatever_the_file():
    # 2,000 random sizes: 224 x 224, 256 tokens, one tile; the clamp says whether it was grown or fitted.
    settings = family_named('paligemma').default_settings('paligemma')
    for w, h in _random_sizes(2000, seed=1) + SIZES:
        geo, clamp = settings.predict(width=w, height=h)
        assert (geo.resized_width, geo.resized_height, geo.num_tokens, geo.num_tiles) == (224, 224, 256, 1)
        assert (geo.original_width, geo.original_height) == (w, h)
        assert clamp == fit_clamp(width=w, height=h, resized_width=224, resized_height=224)
        assert clamp == (None if (w, h) == (224, 224) else Clamp.UPSCALE if max(w, h) <= 224 else Clamp.CANVAS_FIT)


def test_the_image_processor_makes_the_predicted_size(checkpoint):
    # Tens of sizes through the checkpoint's own SiglipImageProcessor (extreme ratios and 1-pixel sides too).
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(checkpoint)
    settings = family_named('paligemma').default_settings('paligemma')
    sizes = SIZES + _random_sizes(30, seed=2)
    out = proc.image_processor([Image.new('RGB', s) for s in sizes], return_tensors='pt')['pixel_values']
    for (w, h), pixels in zip(sizes, out, strict=True):
        geo, _ = settings.predict(width=w, height=h)
        assert (geo.resized_height, geo.resized_width) == tuple(pixels.shape[-2:])
    assert proc.image_seq_length == settings.tokens_per_image == 256


def test_every_template_on_the_class_is_covered():
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.gemma import PaliGemmaTemplate
    parents = contract.parents_on_class(PaliGemmaTemplate)
    assert parents == {'paligemma'} and 'paligemma_geo' in TEMPLATE_MAPPING


def test_spec_names_the_location_token_convention():
    settings = family_named('paligemma').default_settings('paligemma')
    assert (settings.coords, settings.box_styles) == ('bins1024', ('paligemma_loc',))


# ---------------------------------------------------------------------------- real encodes
@pytest.mark.parametrize('group', [[(640, 480)], [(50, 60), (2000, 300)], [(300, 1700), (640, 480), (50, 60)]])
def test_encode_identical_and_recorded(checkpoint, images, group):
    parent, geo_tpl = _template(checkpoint, 'paligemma'), _template(checkpoint, 'paligemma_geo')
    paths = [images[s] for s in group]
    expected, encoded = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
    contract.assert_same_encode(expected, encoded)
    from swift_ext.families.encoded import token_runs
    runs = token_runs(encoded['input_ids'], geo_tpl.processor.image_token_id)
    assert tuple(encoded['pixel_values'].shape) == (len(paths), 3, 224, 224)
    for i, (size, path) in enumerate(zip(group, paths, strict=True)):
        geo = _recorded(path)
        assert geo == geo_tpl.geo_settings().predict(width=size[0], height=size[1])[0]
        assert geo.num_tokens == runs[i] == 256


def test_a_448_checkpoint_is_read_from_its_processor(checkpoint, images):
    # google/paligemma-3b-pt-448: 448 x 448, 1024 tokens; the template writes what the processor says.
    tpl = _template(checkpoint, 'paligemma_geo')
    tpl.processor.image_processor.size = {'height': 448, 'width': 448}
    tpl.processor.image_seq_length = 1024
    tpl.__dict__.pop('_geo_settings_cache', None)
    path = images[(640, 480)]
    encoded = tpl.encode(_sample([path]))
    geo = _recorded(path)
    assert (tpl.geo_settings().image_width, tpl.geo_settings().tokens_per_image) == (448, 1024)
    assert (geo.resized_width, geo.resized_height, geo.num_tokens) == (448, 448, 1024)
    assert tuple(encoded['pixel_values'].shape[-2:]) == (448, 448)


def test_swift_max_pixels_prerescale_names_the_clamp(checkpoint, images):
    from swift.template.vision_utils import load_image, rescale_image
    tpl = _template(checkpoint, 'paligemma_geo', max_pixels=50176)
    path = images[(2000, 300)]
    tpl.encode(_sample([path]))
    geo = _recorded(path)
    predicted, clamp = tpl.geo_settings().predict(width=2000, height=300)
    assert geo == predicted and clamp == Clamp.MAX_PIXELS
    assert rescale_image(load_image(path), 50176).size != (2000, 300)  # ms-swift did shrink it first
    assert (geo.original_width, geo.original_height, geo.resized_width) == (2000, 300, 224)


def test_vllm_mode_records_the_prediction(checkpoint, images):
    # The template hands vLLM the image and no tokens: the geometry is the prediction for the handed size.
    tpl = _template(checkpoint, 'paligemma_geo')
    tpl.set_mode('vllm')
    path = images[(300, 1700)]
    encoded = tpl.encode(_sample([path]))
    assert 'pixel_values' not in encoded
    assert _recorded(path) == tpl.geo_settings().predict(width=300, height=1700)[0]


def test_tiny_checkpoint_keeps_the_real_ids(checkpoint):
    # google/paligemma-3b-*: Gemma's control ids, <loc0000> at 256000, <seg000> at 257024, <image> at 257152.
    from transformers import AutoConfig, AutoTokenizer

    from swift_ext.testing.tiny import directory_size
    tok = AutoTokenizer.from_pretrained(checkpoint)
    ids = {'<pad>': 0, '<eos>': 1, '<bos>': 2, '<loc0000>': 256000, '<loc1023>': 257023, '<seg000>': 257024,
           '<seg127>': 257151, '<image>': 257152}
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    assert tok.encode('<loc0012><loc0034> car', add_special_tokens=False)[:2] == [256012, 256034]
    config = AutoConfig.from_pretrained(checkpoint)
    assert (config.image_token_index, config.text_config.vocab_size) == (257152, 257216)
    assert directory_size(checkpoint) < 50e6


def test_ms_swift_cannot_encode_a_prompt_alone_in_train_mode(checkpoint):
    # GRPO's --log_completions re-encodes each prompt without its answer and images, in train mode
    # (GRPOTrainer._apply_chat_template_to_messages_list); PaliGemmaTemplate._encode then searches labels that
    # are all -100 with swift's upper_bound, which reads one past the end (ms-swift 4.6.0). The e2e runs
    # without --log_completions.
    from swift_ext.testing.images import PROMPT
    tpl = _template(checkpoint, 'paligemma')
    with pytest.raises(IndexError):
        tpl.encode({'messages': [{'role': 'user', 'content': PROMPT}]})
