"""An encode's geometry is read and recorded later, in batches (swift_ext.deferred): never later than
a reader needs it, from what the encode returned, once, and in the process that encoded it."""
import functools
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import deferred, runlog
from swift_ext.geometry import ImageGeometry
from swift_ext.images import image_key
from swift_ext.records import STORE, row_limits_key

GEO = ImageGeometry(original_width=64, original_height=48, resized_width=56, resized_height=56, num_tokens=4,
                    grid=(1, 4, 4))


@pytest.fixture()
def qwen(tiny_model):
    from swift.model import get_processor
    from swift.template import get_template
    proc = get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl')
    tpl = get_template(proc, template_type='qwen2_5_vl_geo')
    tpl.set_mode('train')
    deferred.resolve()
    STORE.clear()
    return tpl


def _row(image, text='Where?'):
    return {'messages': [{'role': 'user', 'content': '<image>' + text},
                         {'role': 'assistant', 'content': '[1, 2, 3, 4]'}], 'images': [image]}


def _lines(d):
    path = d / runlog.GEOMETRY_FILE
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _stored(tpl, image):
    return STORE.get(image_key(image), row_limits_key(None), tpl.template_meta.template_type)


def test_an_encode_is_read_when_a_reward_looks_it_up_not_during_the_encode(qwen, sample_images):
    image = next(iter(sample_images.values()))
    qwen.encode(_row(image))
    assert deferred.waiting() == 1  # nothing read yet
    geo = _stored(qwen, image)  # the lookup reads it first
    assert deferred.waiting() == 0 and geo is not None and geo.grid is not None


def test_the_record_comes_from_the_encode_as_it_returned_not_as_ms_swift_changed_it_later(qwen, sample_images):
    image = next(iter(sample_images.values()))
    encoded = qwen.encode(_row(image))
    grid = encoded['image_grid_thw'].tolist()[0]
    encoded['image_grid_thw'] = None  # ms-swift rebinds keys after _encode (truncation, collation)
    geo = _stored(qwen, image)
    assert list(geo.grid) == grid and geo.num_tokens == grid[0] * grid[1] * grid[2] // 4


def test_records_carry_the_step_and_mode_of_their_encode(qwen, sample_images, log_dir):
    image = next(iter(sample_images.values()))
    runlog.set_step(3)
    qwen.encode(_row(image))
    runlog.set_step(4)  # the callback moves to the next step before it flushes
    qwen.set_mode('transformers')
    runlog.flush()
    [rec] = _lines(log_dir)
    assert (rec['step'], rec['mode']) == (3, 'train')


def test_waiting_encodes_are_read_when_there_are_max_jobs_or_the_oldest_is_old(qwen, sample_images, monkeypatch):
    image = next(iter(sample_images.values()))
    monkeypatch.setattr(deferred, 'MAX_JOBS', 3)
    for i in range(2):
        qwen.encode(_row(image, f'{i}'))
    assert deferred.waiting() == 2
    qwen.encode(_row(image, 'third'))
    assert deferred.waiting() == 0  # full: read within the encode that filled it
    monkeypatch.setattr(deferred, 'MAX_SECONDS', 0.05)
    qwen.encode(_row(image))
    time.sleep(0.06)
    qwen.encode(_row(image, 'later'))
    assert deferred.waiting() == 0  # old: read at the next encode


def test_a_lookup_waits_for_a_drain_in_another_thread():
    # The other thread has taken the job but not finished it: the lookup must not miss it.
    started = threading.Event()

    def slow_put():
        started.set()
        time.sleep(0.3)
        STORE.put('/x/slow.png', row_limits_key(None), 't_geo', GEO)

    deferred.defer(slow_put)
    drain = threading.Thread(target=deferred.resolve)
    drain.start()
    started.wait(5)
    assert STORE.get('/x/slow.png', row_limits_key(None), 't_geo') is GEO
    drain.join()


def test_a_job_that_raises_costs_the_caller_nothing(caplog):
    deferred.defer(lambda: 1 / 0)
    deferred.defer(STORE.put, '/x/after.png', row_limits_key(None), 't_geo', GEO)
    assert STORE.get('/x/after.png', row_limits_key(None), 't_geo') is GEO  # the next job still ran
    assert 'deferred job failed' in caplog.text


def _queue_record(name):
    runlog.queue_images([(GEO, f'/x/{name}.png', 0, None, None)], mode='train', template='t_geo',
                        sample_id=lambda: name)


def _child_defers_and_exits(names):
    for name in names:
        deferred.defer(functools.partial(_queue_record, name))


def test_a_forked_child_records_its_own_encodes_at_exit_and_not_its_parents(log_dir):
    deferred.defer(functools.partial(_queue_record, 'parent'))  # still waiting when the child forks
    child = multiprocessing.get_context('fork').Process(target=_child_defers_and_exits, args=(['c1', 'c2'],))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert sorted(r['image'] for r in _lines(log_dir)) == ['/x/c1.png', '/x/c2.png']
    runlog.flush()
    assert sorted(r['image'] for r in _lines(log_dir)) == ['/x/c1.png', '/x/c2.png', '/x/parent.png']


def test_a_process_that_exits_records_what_it_encoded(tmp_path, sample_images, tiny_model):
    # The main process's normal exit (atexit): a run that stops right after encoding loses nothing.
    image = next(iter(sample_images.values()))
    code = (
        'import swift_ext.plugin\n'
        'from swift.model import get_processor\nfrom swift.template import get_template\n'
        f'proc = get_processor({tiny_model("qwen2_5_vl")!r}, model_type="qwen2_5_vl")\n'
        'tpl = get_template(proc, template_type="qwen2_5_vl_geo"); tpl.set_mode("train")\n'
        f'tpl.encode({_row(image)!r})\n'
        'from swift_ext import deferred; assert deferred.waiting() == 1\n')
    env = {**os.environ, runlog.ENV_DIR: str(tmp_path), 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
           'RANK': '0'}
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [rec] = _lines(tmp_path)
    assert rec['image'] == os.path.abspath(image) and rec['grid'] is not None


def _parents():
    from swift_ext.testing.tiny import parents
    return parents()


@pytest.mark.parametrize('parent', _parents())
def test_a_waiting_encode_holds_no_pixels_and_records_what_the_encode_did(parent, tiny_model, sample_images):
    # Up to MAX_JOBS encodes wait: each must hold only ids and small tensors, not the sample's pixels,
    # and what is read later must equal what reading at once records (the prediction, checked by the encode).
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    tpl = get_template(get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type']),
                       template_type=parent + '_geo')
    tpl.set_mode('train')
    deferred.resolve()
    STORE.clear()
    images = [sample_images['landscape'], sample_images['portrait']]
    row = {'messages': [{'role': 'user', 'content': '<image><image>Where?'},
                        {'role': 'assistant', 'content': '[1, 2, 3, 4]'}], 'images': images}
    encoded = tpl.encode(row)
    [(_, args)] = list(deferred._JOBS)
    held = args[1]
    assert set(held) <= set(encoded)
    for key, value in held.items():
        nbytes = value.numel() * value.element_size() if hasattr(value, 'element_size') else 0
        assert nbytes <= 256 * 1024, (key, tuple(value.shape))  # a 640x480 image's pixels are megabytes
    deferred.resolve()
    for image in images:
        geo = _stored(tpl, image)
        with Image.open(image) as im:
            predicted, _ = tpl.geo_settings().predict(width=im.width, height=im.height)
        assert geo == predicted
