"""The recorder (swift_ext.recorder): an encode's geometry is read and written later, a batch at a time,
never later than a reader needs it, from what the encode returned, once, in the process that encoded it;
and its triggers, ordering and fork / exit / kill behaviour as its docstring promises."""
import faulthandler
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import loglines, runlog
from swift_ext import recorder as recorder_module
from swift_ext.geometry import ImageGeometry
from swift_ext.images import image_key
from swift_ext.recorder import batch_fingerprint, recorder, row_fingerprint
from swift_ext.store import STORE, row_limits_key

HANG_SECONDS = 60  # a forked child that has not answered by then is stuck (a loaded 2-core CI runner included)
GEO = ImageGeometry(original_width=64, original_height=48, resized_width=56, resized_height=56, num_tokens=4,
                    grid=(1, 4, 4))


@pytest.fixture()
def qwen(tiny_model):
    from swift.model import get_processor
    from swift.template import get_template
    proc = get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl')
    tpl = get_template(proc, template_type='qwen2_5_vl_geo')
    tpl.set_mode('train')
    recorder().flush()
    STORE.clear()
    return tpl


@pytest.fixture()
def trainer_process():
    """This process plays the trainer (as the geo_log callback makes it) for one test."""
    rec = recorder()
    rec.flush()
    rec.trainer = True
    yield rec
    rec.flush()
    rec.trainer = False
    rec.consumed.clear()


def _row(image, text='Where?'):
    return {'messages': [{'role': 'user', 'content': '<image>' + text},
                         {'role': 'assistant', 'content': '[1, 2, 3, 4]'}], 'images': [image]}


def _lines(d, name=runlog.GEOMETRY_FILE):
    path = d / name
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _stored(tpl, image):
    return STORE.get(image_key(image), row_limits_key(None), tpl.template_meta.template_type)


def _fake_job(name, ids=None, mode='train', step=None):
    lines = loglines.ImageLines(mode=mode, template='t_geo', sample_id=lambda: name,
                              images=[(GEO, f'/x/{name}.png', 0, None, None)], basis='encode', when=time.time())
    recorder().defer(lambda: lines, (), ids=() if ids is None else (ids,), mode=mode, step=step)


# --- reading later, from what the encode returned ------------------------------------------------------------------
def test_an_encode_is_read_when_a_reward_looks_it_up_not_during_the_encode(qwen, sample_images):
    image = next(iter(sample_images.values()))
    qwen.encode(_row(image))
    assert recorder().waiting() == 1  # nothing read yet
    geo = _stored(qwen, image)  # the lookup reads it first
    assert recorder().waiting() == 0 and geo is not None and geo.grid is not None


def test_the_geometry_comes_from_the_encode_as_it_returned_not_as_ms_swift_changed_it_later(qwen, sample_images):
    image = next(iter(sample_images.values()))
    encoded = qwen.encode(_row(image))
    grid = encoded['image_grid_thw'].tolist()[0]
    encoded['image_grid_thw'] = None  # ms-swift rebinds keys after the encode (truncation, collation)
    geo = _stored(qwen, image)
    assert list(geo.grid) == grid and geo.num_tokens == grid[0] * grid[1] * grid[2] // 4


def _parents():
    from swift_ext.testing.tiny import parents
    return parents()


@pytest.mark.parametrize('parent', _parents())
def test_a_waiting_encode_holds_no_pixels_and_records_what_the_encode_did(parent, tiny_model, sample_images):
    # Up to MAX_JOBS encodes wait: each holds only references to ids and small tensors of the encode's own
    # output (no copy, no pixels), and what is read later equals the prediction the encode confirmed.
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    tpl = get_template(get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type']),
                       template_type=parent + '_geo')
    tpl.set_mode('train')
    recorder().flush()
    STORE.clear()
    images = [sample_images['landscape'], sample_images['portrait']]
    row = {'messages': [{'role': 'user', 'content': '<image><image>Where?'},
                        {'role': 'assistant', 'content': '[1, 2, 3, 4]'}], 'images': images}
    encoded = tpl.encode(row)
    [job] = list(recorder().todo)
    held = job.args[1]
    assert set(held) <= set(encoded)
    for key, value in held.items():
        nbytes = value.numel() * value.element_size() if hasattr(value, 'element_size') else 0
        assert nbytes <= 256 * 1024, (key, tuple(value.shape))  # a 640x480 image's pixels are megabytes
        if key == 'input_ids':
            assert value is encoded['input_ids']  # a reference, not a copy
    assert len(job.ids) == 1 and job.ids[0] is encoded['input_ids']
    recorder().resolve()
    assert job.args is None and job.resolve is None  # resolved: nothing of the encode is held any more
    for image in images:
        geo = _stored(tpl, image)
        with Image.open(image) as im:
            predicted, _ = tpl.geo_settings().predict(width=im.width, height=im.height)
        assert geo == predicted


# --- triggers ----------------------------------------------------------------------------------------------------
def test_waiting_encodes_are_read_at_max_jobs_or_when_the_oldest_is_old(qwen, sample_images, monkeypatch):
    image = next(iter(sample_images.values()))
    monkeypatch.setattr(recorder_module, 'MAX_JOBS', 3)
    for i in range(2):
        qwen.encode(_row(image, f'{i}'))
    assert recorder().waiting() == 2
    qwen.encode(_row(image, 'third'))
    assert recorder().waiting() == 0  # full: read within the encode that filled it
    monkeypatch.setattr(recorder_module, 'MAX_SECONDS', 0.05)
    qwen.encode(_row(image))
    time.sleep(0.06)
    qwen.encode(_row(image, 'later'))
    assert recorder().waiting() == 0  # old: read at the next encode


def test_a_collate_outside_the_trainer_writes_its_lines_with_the_batch_and_an_event(qwen, sample_images, log_dir):
    rows = [qwen.encode(_row(sample_images[name])) for name in ('landscape', 'portrait')]
    text_only = qwen.encode({'messages': [{'role': 'user', 'content': 'no image'},
                                          {'role': 'assistant', 'content': 'ok'}]})
    collated = qwen.data_collator(rows + [text_only])
    lines = _lines(log_dir)
    [event] = _lines(log_dir, runlog.BATCHES_FILE)
    batch = batch_fingerprint(collated)
    assert event['event'] == 'collate' and event['batch'] == batch
    # rows with images only; each found itself, so named by this process and its encode, nothing hashed
    token = recorder().token
    assert len(event['rows']) == 2 and len(set(event['rows'])) == 2
    assert all(r.startswith(f'{token}-') and r != row_fingerprint(x['input_ids'])
               for r, x in zip(event['rows'], rows, strict=True))
    assert [(x['step'], x['batch'], x['row']) for x in lines] == [(None, batch, f) for f in event['rows']]


def test_the_trainer_holds_a_training_batch_until_it_trains_on_it(qwen, sample_images, log_dir, trainer_process):
    rows = [qwen.encode(_row(sample_images['landscape']))]
    collated = qwen.data_collator(rows)
    assert _lines(log_dir) == []  # held: the trainer will tell the step
    batch = batch_fingerprint(collated)
    trainer_process.consume(batch, 7)
    [line] = _lines(log_dir)
    assert (line['step'], line['batch']) == (7, batch)
    events = _lines(log_dir, runlog.BATCHES_FILE)
    assert [e['event'] for e in events] == ['collate', 'consume'] and events[1]['step'] == 7
    trainer_process.consume(batch, 8)  # trained on again (--num_iterations): an event, no second line
    assert len(_lines(log_dir)) == 1 and _lines(log_dir, runlog.BATCHES_FILE)[-1]['step'] == 8


def test_a_copied_row_is_found_by_its_fingerprint(qwen, sample_images, log_dir, trainer_process):
    # Streaming datasets hand the collate converted copies of the encoded rows.
    encoded = qwen.encode(_row(sample_images['landscape']))
    copy = {**encoded, 'input_ids': list(encoded['input_ids'])}
    collated = qwen.data_collator([copy])
    trainer_process.consume(batch_fingerprint(collated), 2)
    [line] = _lines(log_dir)
    assert line['step'] == 2 and line['row'] == row_fingerprint(copy['input_ids'])


def test_a_batch_of_own_and_copied_rows_names_each_as_its_lines_do(qwen, sample_images, log_dir):
    own = qwen.encode(_row(sample_images['landscape']))
    other = qwen.encode(_row(sample_images['portrait']))
    copy = {**other, 'input_ids': list(other['input_ids'])}
    qwen.data_collator([own, copy])
    lines, [event] = _lines(log_dir), _lines(log_dir, runlog.BATCHES_FILE)
    assert event['rows'][0].startswith(f'{recorder().token}-')
    assert event['rows'][1] == row_fingerprint(copy['input_ids'])
    assert [x['row'] for x in lines] == event['rows']


def test_rollout_lines_carry_the_step_of_their_encode(qwen, sample_images, log_dir):
    runlog.set_step(3)
    qwen.set_mode('transformers')
    qwen.encode(_row(sample_images['landscape']))
    runlog.set_step(4)
    recorder().flush()
    [line] = _lines(log_dir)
    assert (line['step'], line['mode'], line['basis'], line['row']) == (3, 'rollout', 'encode', None)


def test_a_lookup_waits_for_a_drain_in_another_thread():
    # The other thread has taken the job but not finished it: the lookup must not miss it.
    started = threading.Event()

    def slow_put():
        started.set()
        time.sleep(0.3)
        STORE.put('/x/slow.png', row_limits_key(None), 't_geo', GEO)

    recorder().defer(slow_put, ())
    drain = threading.Thread(target=recorder().drain)
    drain.start()
    started.wait(5)
    assert STORE.get('/x/slow.png', row_limits_key(None), 't_geo') is GEO
    drain.join()


def test_a_job_that_raises_is_counted_as_lost_and_costs_the_caller_nothing(caplog, log_dir):
    from swift_ext.warn import reset_warnings
    reset_warnings()
    lost = runlog.lost_records()
    recorder().defer(lambda: 1 / 0, ())
    recorder().defer(STORE.put, ('/x/after.png', row_limits_key(None), 't_geo', GEO))
    assert STORE.get('/x/after.png', row_limits_key(None), 't_geo') is GEO  # the next job still ran
    assert runlog.lost_records() == lost + 1  # the step it belonged to leaves its per-step counts out
    assert 'could not record image geometry' in caplog.text


# --- processes ---------------------------------------------------------------------------------------------------
def _child_defers_and_exits(names):
    for name in names:
        _fake_job(name)
    recorder().encode_only = False  # a dataloader-like child: its lines wait for a trigger (here: exit)


def test_a_forked_child_writes_its_own_encodes_at_exit_and_not_its_parents(log_dir):
    _fake_job('parent')  # still waiting when the child forks
    child = multiprocessing.get_context('fork').Process(target=_child_defers_and_exits, args=(['c1', 'c2'],))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert sorted(r['image'] for r in _lines(log_dir)) == ['/x/c1.png', '/x/c2.png']
    recorder().flush()
    assert sorted(r['image'] for r in _lines(log_dir)) == ['/x/c1.png', '/x/c2.png', '/x/parent.png']


def _encode_only_child(conn):
    _fake_job('early')
    conn.send(len(recorder().todo))


def test_a_worker_that_only_encodes_writes_each_encode_at_once(log_dir):
    # ms-swift's packing workers hand each encode to the trainer right away: its line must be on disk first.
    parent, child_end = multiprocessing.get_context('fork').Pipe()
    child = multiprocessing.get_context('fork').Process(target=_encode_only_child, args=(child_end,))
    child.start()
    waiting = parent.recv()
    child.join(60)
    assert waiting == 0 and [r['image'] for r in _lines(log_dir)] == ['/x/early.png']


def _wait_for_channel_then_encode(conn):
    conn.recv()  # the trainer named the folder after this worker started
    _fake_job('late')


def test_a_worker_started_before_the_run_folder_is_named_learns_it(tmp_path, monkeypatch):
    monkeypatch.delenv(runlog.ENV_DIR, raising=False)
    monkeypatch.delenv(runlog.ENV_CHANNEL, raising=False)
    runlog.open_channel()
    parent, child_end = multiprocessing.get_context('fork').Pipe()
    child = multiprocessing.get_context('fork').Process(target=_wait_for_channel_then_encode, args=(child_end,))
    child.start()
    run = tmp_path / 'run'
    runlog.publish_log_dir(str(run))
    parent.send('go')
    child.join(60)
    try:
        assert child.exitcode == 0 and [r['image'] for r in _lines(run)] == ['/x/late.png']
    finally:
        os.unlink(os.environ[runlog.ENV_CHANNEL])


def test_a_process_that_exits_writes_what_it_encoded(tmp_path, sample_images, tiny_model):
    # The main process's normal exit (atexit): a run that stops right after encoding loses nothing.
    image = next(iter(sample_images.values()))
    code = (
        'import swift_ext.plugin\n'
        'from swift.model import get_processor\nfrom swift.template import get_template\n'
        f'proc = get_processor({tiny_model("qwen2_5_vl")!r}, model_type="qwen2_5_vl")\n'
        'tpl = get_template(proc, template_type="qwen2_5_vl_geo"); tpl.set_mode("train")\n'
        f'tpl.encode({_row(image)!r})\n'
        'from swift_ext.recorder import recorder; assert recorder().waiting() == 1\n')
    env = {**os.environ, runlog.ENV_DIR: str(tmp_path), 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
           'RANK': '0'}
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [rec] = _lines(tmp_path)
    assert rec['image'] == os.path.abspath(image) and rec['grid'] is not None


def test_a_killed_process_keeps_every_encode_that_reached_a_trigger(tmp_path, sample_images, tiny_model):
    # 40 encodes, no collate, then SIGKILL: the count trigger wrote 2 x MAX_JOBS of them.
    image = next(iter(sample_images.values()))
    code = (
        'import os, signal, swift_ext.plugin\n'
        'from swift.model import get_processor\nfrom swift.template import get_template\n'
        f'proc = get_processor({tiny_model("qwen2_5_vl")!r}, model_type="qwen2_5_vl")\n'
        'tpl = get_template(proc, template_type="qwen2_5_vl_geo"); tpl.set_mode("train")\n'
        f'rows = [tpl.encode({_row(image)!r}) for _ in range(40)]\n'
        'os.kill(os.getpid(), signal.SIGKILL)\n')
    env = {**os.environ, runlog.ENV_DIR: str(tmp_path), 'RANK': '0'}
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert len(_lines(tmp_path)) == 2 * recorder_module.MAX_JOBS


def test_fingerprints_are_the_same_in_every_process():
    ids = list(range(1000, 3000))
    code = 'from swift_ext.recorder import row_fingerprint; print(row_fingerprint(list(range(1000, 3000))))'
    other = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, 'PYTHONHASHSEED': '123'})
    assert other.stdout.strip() == row_fingerprint(ids) == row_fingerprint(torch.tensor(ids))
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert batch_fingerprint({'input_ids': a}) == batch_fingerprint({'model_inputs': {'input_ids': a.clone()}})
    assert batch_fingerprint({'input_ids': a}) != batch_fingerprint({'input_ids': a.reshape(3, 2)})
    assert batch_fingerprint({'pixel_values': a}) is None and batch_fingerprint([a]) is None
    # The same ids however they are held (int32 or int64, a strided view) are the same batch.
    b = torch.randint(0, 250000, (4, 300))
    assert batch_fingerprint({'input_ids': b}) == batch_fingerprint({'input_ids': b.to(torch.int32)}) \
        == batch_fingerprint({'input_ids': b.t().contiguous().t()})
    assert batch_fingerprint({'input_ids': b.t()}) not in (None, batch_fingerprint({'input_ids': b}))
    changed = b.clone()
    changed[3, 299] += 1
    assert batch_fingerprint({'input_ids': changed}) != batch_fingerprint({'input_ids': b})


def _forked_child_uses_every_lock(conn, stack_file):
    # Where the child is stuck, should it be: its stack, for the failure message.
    with open(stack_file, 'w') as out:
        faulthandler.dump_traceback_later(HANG_SECONDS / 2, file=out)
        _use_every_lock(conn)
        faulthandler.cancel_dump_traceback_later()


def _use_every_lock(conn):
    from swift_ext import images, store, warn
    from swift_ext.geometry import ImageGeometry as G
    store.STORE.put('/child.png', (None, None), 'c_geo', G(1, 1, 1, 1, 1))
    store.set_active_settings(type('S', (), {'template': 'c_geo'})())
    images.payload_size('sha1:child')
    warn.warn_once('child', 'child warning')
    runlog.append_data(os.path.join(os.environ[runlog.ENV_DIR], 'child.jsonl'), b'{}\n')
    recorder().flush()
    conn.send('ok')


def test_forks_under_two_busy_threads_never_hang(log_dir):
    # Children forked while other threads hold the store's, the payload table's, the active-template
    # table's, the warnings', the writer's or the recorder's lock must not inherit a held lock.
    from swift_ext import images, store, warn
    stop = threading.Event()
    # Told here, before any thread runs: from then on the busy threads take the warnings' lock and write
    # nothing. A thread writing to stderr while a child is forked leaves the stream's own lock held in the
    # child (CPython does not reset io locks at fork), and the child's first warning waits on it forever:
    # one CI run showed exactly that stack (logging's StreamHandler.flush). Python's hazard, not a
    # swift-ext lock; this test is about swift-ext's locks.
    warn.warn_once('busy', 'busy')

    def busy():
        while not stop.is_set():
            store.STORE.put('/busy.png', (None, None), 'b_geo', GEO)
            store.active_settings()
            images.payload_size('sha1:busy')
            warn.warn_once('busy', 'busy')
            with recorder().lock:
                pass
            with runlog.STATE.lock:
                pass

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    hung = []
    ctx = multiprocessing.get_context('fork')
    try:
        for i in range(100):
            parent, child_end = ctx.Pipe()
            stack = log_dir.parent / f'stack{i}.txt'
            child = ctx.Process(target=_forked_child_uses_every_lock, args=(child_end, str(stack)))
            child.start()
            if not parent.poll(HANG_SECONDS):  # a bound for a hang (a held lock waits forever), not a timing
                hung.append(stack.read_text() if stack.exists() else '(no stack written)')
                child.kill()
            child.join(HANG_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert not hung, hung[0]

