"""Encodes for an inference engine (vLLM: GRPO colocate, `swift rollout`, `swift infer --infer_backend vllm`)
are recorded too: ms-swift's own vLLM-mode encode, driven as its engines drive it (``set_mode('vllm')`` and
``InferEngine._batch_encode``, which encodes in a thread pool), without vLLM installed.

In vLLM mode ``Template._encode_truncated`` calls ``Template._encode`` past the parent's own ``_encode``, so the
geometry is read where that mode passes: Qwen templates hand vLLM the image ``fetch_image`` resized (the line
says ``basis: handed_image``); LLaVA-NeXT and InternVL hand the image after ms-swift's pre-rescale and vLLM's
processor does the rest (``basis: prediction``). Each is checked against the real HF processor run on what
was handed over, as vLLM's processor runs it."""
import json
from types import SimpleNamespace

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import runlog, store
from swift_ext.images import image_key
from swift_ext.recorder import recorder
from swift_ext.store import STORE, row_limits_key

SIZES = [(640, 480), (300, 500), (1000, 200), (50, 60)]


def _template(tiny_model, parent, mode):
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    proc = get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type'])
    tpl = get_template(proc, template_type=parent + '_geo')
    tpl.set_mode(mode)
    return tpl


def _images(tmp_path):
    paths = []
    for w, h in SIZES:
        path = tmp_path / f'{w}x{h}.png'
        Image.new('RGB', (w, h), (200, 30, 30)).save(path)
        paths.append(str(path))
    return paths


def _engine_encode(tpl, paths):
    """What ms-swift's vLLM engine does before it builds vLLM's inputs: encode every request in threads."""
    from swift.infer_engine import InferRequest
    from swift.infer_engine.infer_engine import InferEngine
    requests = [InferRequest(messages=[{'role': 'user', 'content': '<image>Where is it?'}], images=[p])
                for p in paths]
    encoded, errors = InferEngine._batch_encode(SimpleNamespace(template=tpl), requests, strict=True)
    assert not errors
    return encoded


def _lines(d):
    return [json.loads(x) for x in (d / runlog.GEOMETRY_FILE).read_text().splitlines()]


def _processor_tokens(tpl, image, token):
    """Image tokens the model's HF processor (vLLM's, for these families) puts in for ``image``."""
    proc = tpl.processor
    out = proc(text=[f'{proc.image_token} hi'], images=[image], return_tensors='pt')
    return int((out['input_ids'] == token).sum())


@pytest.fixture(autouse=True)
def _fresh():
    recorder().flush()
    store.reset()
    yield
    recorder().flush()


def test_qwen_vllm_encodes_are_logged_from_the_resized_image_handed_over(tiny_model, tmp_path, log_dir):
    tpl = _template(tiny_model, 'qwen2_5_vl', 'vllm')
    paths = _images(tmp_path)
    runlog.set_step(5)
    encoded = _engine_encode(tpl, paths)
    lines = {line['image']: line for line in _lines_after_lookup(tpl, paths, log_dir)}
    for path, enc in zip(paths, encoded, strict=True):
        [handed] = enc['images']
        grid = tpl.processor.image_processor(images=[handed], return_tensors='pt',
                                             **enc['mm_processor_kwargs'])['image_grid_thw'][0].tolist()
        geo = STORE.get(image_key(path), row_limits_key(None), 'qwen2_5_vl_geo')
        assert geo is not None and (geo.resized_width, geo.resized_height) == handed.size
        assert list(geo.grid) == grid and geo.num_tokens == grid[0] * grid[1] * grid[2] // 4
        line = lines[path]
        assert (line['mode'], line['basis'], line['step'], line['row']) == ('rollout', 'handed_image', 5, None)
        assert (line['resized_width'], line['resized_height'], line['num_tokens']) == (
            geo.resized_width, geo.resized_height, geo.num_tokens)
    runlog.set_step(None)


def _lines_after_lookup(tpl, paths, log_dir):
    STORE.get(image_key(paths[0]), row_limits_key(None), tpl.geo_spec.name)  # a reward's lookup: the trigger
    return _lines(log_dir)


@pytest.mark.parametrize('parent', ['llava1_6_mistral_hf', 'internvl_hf'])
def test_vllm_encodes_of_families_whose_engine_resizes_are_logged_as_predictions(parent, tiny_model, tmp_path,
                                                                                  log_dir):
    tpl = _template(tiny_model, parent, 'vllm')
    paths = _images(tmp_path)
    encoded = _engine_encode(tpl, paths)
    lines = {line['image']: line for line in _lines_after_lookup(tpl, paths, log_dir)}
    token = tpl.processor.tokenizer.convert_tokens_to_ids(tpl.processor.image_token)
    for path, enc in zip(paths, encoded, strict=True):
        [handed] = enc['images']
        geo = STORE.get(image_key(path), row_limits_key(None), parent + '_geo')
        assert geo.num_tokens == _processor_tokens(tpl, handed, token)
        assert (lines[path]['basis'], lines[path]['mode']) == ('prediction', 'rollout')
        assert lines[path]['num_tokens'] == geo.num_tokens


@pytest.mark.parametrize('parent', ['qwen2_5_vl', 'llava1_6_mistral_hf', 'internvl_hf'])
def test_a_vllm_encode_records_what_a_training_encode_of_the_same_image_records(parent, tiny_model, tmp_path):
    paths = _images(tmp_path)
    _engine_encode(_template(tiny_model, parent, 'vllm'), paths)
    engine = [STORE.get(image_key(p), row_limits_key(None), parent + '_geo') for p in paths]
    store.reset()
    train = _template(tiny_model, parent, 'train')
    for path in paths:
        train.encode({'messages': [{'role': 'user', 'content': '<image>Where?'},
                                   {'role': 'assistant', 'content': 'there'}], 'images': [path]})
    trained = [STORE.get(image_key(p), row_limits_key(None), parent + '_geo') for p in paths]
    assert engine == trained and all(g is not None for g in trained)


def test_an_engine_encode_that_fails_names_the_image_at_fault_only(tiny_model, tmp_path, log_dir):
    good = _images(tmp_path)[0]
    bad = str(tmp_path / 'thin.png')
    Image.new('RGB', (600, 2)).save(bad)  # 300:1, refused by smart_resize
    tpl = _template(tiny_model, 'qwen2_5_vl', 'vllm')
    from swift.infer_engine import InferRequest
    from swift.infer_engine.infer_engine import InferEngine
    request = InferRequest(messages=[{'role': 'user', 'content': '<image><image>Both?'}], images=[good, bad])
    _, errors = InferEngine._batch_encode(SimpleNamespace(template=tpl), [request], strict=False)
    assert len(errors) == 1 and bad in str(errors[0][1])
    recorder().flush()
    lines = _lines(log_dir)  # one per encode attempt (ms-swift retries a failed encode), none for the good image
    assert lines and all((x['image'], x['image_index'], x['mode']) == (bad, 1, 'rollout') for x in lines)
    assert all('aspect ratio' in x['error'] for x in lines)


@pytest.mark.parametrize('rollout_max_pixels, differ', [(None, 0), (40000, 3)])
def test_check_compares_what_rollouts_and_training_did_to_each_image(tiny_model, tmp_path, log_dir,
                                                                     rollout_max_pixels, differ):
    # One process encoding for vLLM and for training (GRPO colocate): `swift-ext check RUN` compares, per image,
    # the geometry of both sides' lines; a rollout engine started with another --max_pixels resizes differently.
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.cli.check import check
    from swift_ext.cli.check_report import format_report
    proc = get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl')
    rollout = get_template(proc, template_type='qwen2_5_vl_geo', max_pixels=rollout_max_pixels)
    rollout.set_mode('vllm')
    paths = _images(tmp_path)[:3]
    _engine_encode(rollout, paths)
    train = get_template(proc, template_type='qwen2_5_vl_geo')
    train.set_mode('train')
    for path in paths:
        train.encode({'messages': [{'role': 'user', 'content': '<image>Where?'},
                                   {'role': 'assistant', 'content': 'there'}], 'images': [path]})
    recorder().flush()
    report = check([str(log_dir)])
    assert report['images']['compared'] == 3 and report['images']['differ'] == differ
    assert report['same'] is (differ == 0)
    text = format_report(report)
    assert f'images encoded for both rollouts and training: 3, {differ} with a different geometry' in text
