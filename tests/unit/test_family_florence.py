"""Florence-2 (`florence`, an encoder-decoder): every image is 768 x 768 with 577 features, as the real image
processor makes it; a real encode through `florence_geo` is byte-identical to ms-swift's `florence` and records it;
the recorder tells encoder-decoder rows apart by their answers; and what keeps ms-swift 4.6 from training it."""
import functools
import json
import random
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import runlog
from swift_ext.boxes import parse_boxes
from swift_ext.families import family_named
from swift_ext.geometry import Clamp, fit_clamp
from swift_ext.images import image_key
from swift_ext.recorder import recorder
from swift_ext.store import STORE
from swift_ext.testing import contract

_template = functools.partial(contract.checkpoint_template, model_type='florence')

SIZES = [(1, 1), (1, 3000), (3000, 1), (50, 60), (768, 768), (640, 480), (2000, 300), (300, 1700), (4000, 3000)]


@pytest.fixture(scope='module')
def checkpoint(tiny_model):
    return tiny_model('florence')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('florence_images')
    paths = {}
    for name, (w, h) in {'a': (640, 480), 'b': (640, 480), 'wide': (2000, 300), 'tiny': (50, 60)}.items():
        path = root / f'{name}_{w}x{h}.png'
        Image.new('RGB', (w, h), (len(name) * 40, h % 256, 90)).save(path)
        paths[name] = str(path)
    return paths


def _sample(path, task='<OD>', answer='car<loc_100><loc_200><loc_500><loc_600>'):
    # Florence's task prompts are the whole query: no `<image>` tag (ms-swift adds none for this template).
    return contract.sample([path], task, answer, tag='')


def _recorded(path):
    recorder().resolve()
    return STORE.get(image_key(path), (None, None), 'florence_geo')


# ------------------------------------------------------------------------------ arithmetic
def test_prediction_is_the_square_whatever_the_file():
    settings = family_named('florence').default_settings('florence')
    rng = random.Random(1)
    sizes = [(max(1, int(10 ** rng.uniform(0, 4))), max(1, int(10 ** rng.uniform(0, 4)))) for _ in range(2000)]
    for w, h in sizes + SIZES:
        geo, clamp = settings.predict(width=w, height=h)
        assert (geo.resized_width, geo.resized_height, geo.num_tokens, geo.num_tiles) == (768, 768, 577, 1)
        assert clamp == fit_clamp(width=w, height=h, resized_width=768, resized_height=768)
    assert settings.predict(width=4000, height=3000)[1] == Clamp.CANVAS_FIT
    assert (settings.coords, settings.box_styles) == ('bins1000', ('florence_loc',))


def test_the_image_processor_makes_the_predicted_size(checkpoint):
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(checkpoint)
    settings = family_named('florence').default_settings('florence')
    assert proc.num_image_tokens == settings.tokens_per_image == 577
    for w, h in SIZES:
        out = proc.image_processor([Image.new('RGB', (w, h))], return_tensors='pt')['pixel_values']
        geo, _ = settings.predict(width=w, height=h)
        assert tuple(out.shape) == (1, 3, geo.resized_height, geo.resized_width), (w, h)


def test_every_template_on_the_class_is_covered():
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.microsoft import FlorenceTemplate
    parents = contract.parents_on_class(FlorenceTemplate)
    assert parents == {'florence'} and TEMPLATE_MAPPING['florence_geo'].template_cls.is_encoder_decoder


# ---------------------------------------------------------------------------- real encodes
@pytest.mark.parametrize('task,answer', [
    ('<OD>', 'car<loc_100><loc_200><loc_500><loc_600>'),
    ('<CAPTION_TO_PHRASE_GROUNDING>a red car', 'a red car<loc_1><loc_2><loc_998><loc_999>'),
])
@pytest.mark.parametrize('name', ['a', 'wide', 'tiny'])
def test_encode_identical_and_recorded(checkpoint, images, name, task, answer):
    parent, geo_tpl = _template(checkpoint, 'florence'), _template(checkpoint, 'florence_geo')
    path = images[name]
    expected, encoded = parent.encode(_sample(path, task, answer)), geo_tpl.encode(_sample(path, task, answer))
    contract.assert_same_encode(expected, encoded)
    # The prompt holds no image token: the model puts its 577 features before it.
    assert geo_tpl.processor.image_token_id not in encoded['input_ids']
    geo = _recorded(path)
    w, h = Image.open(path).size
    assert geo == geo_tpl.geo_settings().predict(width=w, height=h)[0]
    assert (geo.resized_height, geo.resized_width) == tuple(encoded['pixel_values'].shape[-2:]) == (768, 768)


def test_the_templates_own_decode_reads_boxes_as_bins1000_does(checkpoint, images):
    from swift.template.template_inputs import StdTemplateInputs
    # ms-swift's FlorenceTemplate.decode_generate_ids runs the processor's post_process_generation with the
    # file's size; parse_boxes + from_model_frame give the same boxes (the reference truncates to int).
    tpl = _template(checkpoint, 'florence_geo')
    path = images['wide']
    image = Image.open(path)
    tpl.encode(_sample(path))
    geo = _recorded(path)
    answer = 'car<loc_100><loc_200><loc_500><loc_600>dog<loc_0><loc_999><loc_3><loc_999>'
    ids = tpl.tokenizer.encode(answer, add_special_tokens=False)
    inputs = StdTemplateInputs(messages=[{'role': 'user', 'content': '<OD>'}], images=[image])
    inputs.query = inputs.to_history()['query']  # as the template's _encode sets it before generation
    decoded = json.loads(tpl.decode_generate_ids(ids, template_inputs=inputs))
    ours = [[int(v) for v in geo.from_model_frame(box, 'bins1000')] for box in parse_boxes(answer)]
    assert decoded['<OD>']['bboxes'] == ours and decoded['<OD>']['labels'] == ['car', 'dog']


# --------------------------------------------------------------- recording an encoder-decoder
def test_rows_with_one_prompt_are_told_apart_by_their_answers(checkpoint, images, log_dir):
    # Every `<OD>` row has the same encoder prompt; two same-sized images make identical `input_ids`. Two
    # batches collated before either trains (a dataloader prefetching) must each get their own step: without
    # the answers in the fingerprints both batches are one, and the first step takes both images.
    from transformers.trainer_callback import TrainerControl, TrainerState

    from swift_ext import callback
    tpl = _template(checkpoint, 'florence_geo')
    trainer = SimpleNamespace(custom_metrics={}, template=tpl, state=TrainerState(), trained=[])
    trainer.compute_loss = lambda model, inputs, **kw: trainer.trained.append(inputs) or 0.0
    args = SimpleNamespace(output_dir=str(log_dir))
    cb = callback.GeoLogCallback(args, trainer)
    try:
        rows, batches = [], []
        for name, answer in (('a', 'car<loc_1><loc_2><loc_3><loc_4>'), ('b', 'dog<loc_5><loc_6><loc_7><loc_8>')):
            rows.append(tpl.encode(_sample(images[name], answer=answer)))  # a loader encodes a batch's rows,
            batches.append(tpl.data_collator(rows[-1:]))  # collates them, and goes on to the next batch
        assert rows[0]['input_ids'] == rows[1]['input_ids']
        control = TrainerControl()
        cb.on_train_begin(args, trainer.state, control)
        for batch in batches:
            cb.on_step_begin(args, trainer.state, control)
            trainer.compute_loss(SimpleNamespace(training=True), batch)
            trainer.state.global_step += 1
            cb.on_step_end(args, trainer.state, control)
        recorder().flush()
        lines = [json.loads(x) for x in (log_dir / runlog.GEOMETRY_FILE).read_text().splitlines()]
        steps = {line['image']: line['step'] for line in lines}
        assert steps == {images['a']: 1, images['b']: 2}
        assert len({line['row'] for line in lines}) == 2 and len({line['batch'] for line in lines}) == 2
    finally:
        recorder().trainer = False
        recorder().consumed.clear()
        runlog.set_step(None)


# ------------------------------------------------------------- why ms-swift 4.6 cannot train it
def test_ms_swift_cannot_load_the_native_checkpoint(checkpoint):
    # FlorenceLoader loads through AutoModelForCausalLM, which transformers 5.19 has no Florence2Config entry for
    # (the microsoft/Florence-2-* hub code it was written for does not build its config under transformers 5).
    from swift.model import get_model_processor
    with pytest.raises(ValueError, match='Florence2Config.*AutoModelForCausalLM'):
        get_model_processor(checkpoint, model_type='florence', torch_dtype=torch.float32)


def test_the_templates_forward_hook_needs_the_hub_model(checkpoint, images):
    # FlorenceTemplate._post_encode merges image features with methods only the hub code defines.
    from transformers import Florence2ForConditionalGeneration
    model = Florence2ForConditionalGeneration.from_pretrained(checkpoint)
    tpl = _template(checkpoint, 'florence_geo')
    batch = tpl.data_collator([tpl.encode(_sample(images['tiny']))])
    with pytest.raises(AttributeError, match='_encode_image'):
        tpl._post_encode(model, batch)


def test_tiny_checkpoint_keeps_the_real_ids(checkpoint):
    # BART's control ids, Florence-2's <loc_0> at 50269 ... <loc_999> at 51268, <image> at 51289 (its config).
    from transformers import AutoConfig, AutoTokenizer

    from swift_ext.testing.tiny import directory_size
    tok = AutoTokenizer.from_pretrained(checkpoint)
    ids = {'<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3, '<od>': 50265, '<loc_0>': 50269, '<loc_999>': 51268,
           '<image>': 51289}
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    assert tok.encode('car<loc_5><loc_6>', add_special_tokens=False)[-2:] == [50274, 50275]
    assert AutoConfig.from_pretrained(checkpoint).image_token_id == 51289
    assert directory_size(checkpoint) < 50e6
