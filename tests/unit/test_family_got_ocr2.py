"""GOT-OCR 2.0 (`got_ocr2_hf`): every image is 1024 x 1024 with 256 tokens, as the real GotOcr2 processor makes it
in ms-swift's collator; a real encode through `got_ocr2_hf_geo` is byte-identical to its parent and records it."""
import functools
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named
from swift_ext.families.encoded import token_runs
from swift_ext.geometry import Clamp, fit_clamp
from swift_ext.images import image_key
from swift_ext.recorder import recorder
from swift_ext.store import STORE
from swift_ext.testing import contract

_template = functools.partial(contract.checkpoint_template, model_type='got_ocr2_hf')
_sample = functools.partial(contract.sample, prompt='OCR: ', answer='some text')

SIZES = [(1, 1), (1, 3000), (3000, 1), (50, 60), (1024, 1024), (640, 480), (2000, 300), (300, 1700), (4000, 3000)]


@pytest.fixture(scope='module')
def checkpoint(tiny_model):
    return tiny_model('got_ocr2_hf')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('got_images'), [(50, 60), (640, 480), (2000, 300)])


def test_prediction_is_the_square_whatever_the_file():
    settings = family_named('got_ocr2').default_settings('got_ocr2_hf')
    rng = random.Random(1)
    sizes = [(max(1, int(10 ** rng.uniform(0, 4))), max(1, int(10 ** rng.uniform(0, 4)))) for _ in range(2000)]
    for w, h in sizes + SIZES:
        geo, clamp = settings.predict(width=w, height=h)
        assert (geo.resized_width, geo.resized_height, geo.num_tokens, geo.num_tiles) == (1024, 1024, 256, 1)
        assert clamp == fit_clamp(width=w, height=h, resized_width=1024, resized_height=1024)
    assert settings.predict(width=30, height=30)[1] == Clamp.UPSCALE
    assert not family_named('got_ocr2').spec('got_ocr2_hf').boxes_trained  # a box is an input, not an answer


def test_the_processor_makes_the_predicted_size_and_never_crops(checkpoint):
    # The processor call ms-swift's collator makes; a checkpoint asking for crop_to_patches does not get it:
    # GotOcr2ProcessorKwargs passes crop_to_patches=False explicitly.
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(checkpoint)
    settings = family_named('got_ocr2').default_settings('got_ocr2_hf')
    for crop in (False, True):
        proc.image_processor.crop_to_patches = crop
        for w, h in SIZES:
            out = proc([Image.new('RGB', (w, h))], return_tensors='pt')
            geo, _ = settings.predict(width=w, height=h)
            assert tuple(out['pixel_values'].shape) == (1, 3, geo.resized_height, geo.resized_width), (w, h, crop)


@pytest.mark.parametrize('group', [[(640, 480)], [(50, 60), (2000, 300)]])
def test_encode_identical_and_recorded(checkpoint, images, group):
    parent, geo_tpl = _template(checkpoint, 'got_ocr2_hf'), _template(checkpoint, 'got_ocr2_hf_geo')
    paths = [images[s] for s in group]
    expected, encoded = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
    assert sorted(expected) == sorted(encoded) == ['images', 'input_ids', 'labels']
    assert expected['input_ids'] == encoded['input_ids'] and expected['labels'] == encoded['labels']
    assert [im.tobytes() for im in expected['images']] == [im.tobytes() for im in encoded['images']]
    runs = token_runs(encoded['input_ids'], geo_tpl.processor.image_token_id)
    # The pixels are made in the collator: they are what the recorded geometry says.
    collated = geo_tpl.data_collator([encoded])
    assert tuple(collated['pixel_values'].shape) == (len(paths), 3, 1024, 1024)
    recorder().resolve()
    for i, (size, path) in enumerate(zip(group, paths, strict=True)):
        geo = STORE.get(image_key(path), (None, None), 'got_ocr2_hf_geo')
        assert geo == geo_tpl.geo_settings().predict(width=size[0], height=size[1])[0]
        assert geo.num_tokens == runs[i] == 256
    assert torch.equal(collated['input_ids'][0], torch.tensor(encoded['input_ids']))


def test_tiny_checkpoint_keeps_the_real_ids(checkpoint):
    # stepfun-ai/GOT-OCR-2.0-hf: Qwen's chat ids, <img> 151857, </img> 151858, <imgpad> 151859.
    from transformers import AutoConfig, AutoTokenizer

    from swift_ext.testing.tiny import directory_size
    tok = AutoTokenizer.from_pretrained(checkpoint)
    ids = {'<|endoftext|>': 151643, '<|im_start|>': 151644, '<|im_end|>': 151645, '<img>': 151857,
           '</img>': 151858, '<imgpad>': 151859}
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    assert AutoConfig.from_pretrained(checkpoint).image_token_index == 151859
    assert directory_size(checkpoint) < 50e6


def test_a_collated_row_is_tagged_with_its_batch(checkpoint, images, log_dir):
    # The encode holds `images`, not pixels: the collate must still count the row as one with images, or its
    # lines would never learn the step that trained on them.
    import json

    from swift_ext import runlog
    from swift_ext.recorder import batch_fingerprint
    tpl = _template(checkpoint, 'got_ocr2_hf_geo')
    collated = tpl.data_collator([tpl.encode(_sample([images[(640, 480)]]))])
    [line] = [json.loads(x) for x in (log_dir / runlog.GEOMETRY_FILE).read_text().splitlines()]
    [event] = [json.loads(x) for x in (log_dir / runlog.BATCHES_FILE).read_text().splitlines()]
    assert line['batch'] == event['batch'] == batch_fingerprint(collated) and event['rows'] == [line['row']]
