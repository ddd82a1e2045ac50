"""The geometry log writer under hostile conditions: failing writes are warned about once and counted,
a deleted log folder is recreated (and said), lost records never read as 0 images, and a fork while
another thread holds the writer's lock does not deadlock the child. Fork/thread stress keeps every line whole."""
import json
import logging
import os
import shutil
import threading
import time

from swift_ext import runlog
from swift_ext.callback import compute_metrics, new_metrics, update_metrics
from swift_ext.runlog import GeoFileTail
from swift_ext.warn import reset_warnings


def _record(i):
    return {'step': i, 'image': f'/x/{i}.png', 'num_tokens': 4, 'resized_width': 28, 'resized_height': 28,
            'mode': 'train', 'error': None}


def _emit(records):
    """What the recorder does at a trigger: whole lines in one write to this rank's geometry file."""
    runlog.write(runlog.log_dir(), ''.join(json.dumps(r) + '\n' for r in records), len(records))


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _wait(pid, bound=60.0):
    """The child's exit status, or None if it is still running after ``bound`` seconds (a deadlock)."""
    end = time.monotonic() + bound
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def test_failed_writes_warn_once_per_cause_and_are_counted(tmp_path, monkeypatch, caplog):
    (tmp_path / 'blocker').write_text('a file where the log folder should be')
    monkeypatch.setenv(runlog.ENV_DIR, str(tmp_path / 'blocker' / 'run'))
    reset_warnings()
    before = runlog.lost_records()
    with caplog.at_level(logging.WARNING, logger='swift_ext'):
        for i in range(1000):
            _emit([_record(i), _record(i)])  # never raises
    assert runlog.lost_records() - before == 2000
    warnings = [r.getMessage() for r in caplog.records if 'could not write' in r.getMessage()]
    assert len(warnings) == 1 and 'counted' in warnings[0]


def test_unserialisable_event_never_raises(log_dir, caplog):
    reset_warnings()
    with caplog.at_level(logging.WARNING, logger='swift_ext'):
        runlog.write(str(log_dir), '', 0, [{'bad': object()}])
    assert 'unserialisable event' in caplog.text


def test_deleted_log_folder_is_recreated_and_said(log_dir, caplog):
    _emit([_record(1)])
    path = runlog.geometry_path(str(log_dir))
    tail = GeoFileTail(path)
    assert [r['step'] for r in tail.read_new()] == [1]
    shutil.rmtree(log_dir)
    assert tail.read_new() == [] and tail.missing  # gone: records may be lost, not "0 images"
    with caplog.at_level(logging.WARNING, logger='swift_ext'):
        _emit([_record(2)])
        _emit([_record(3)])
    assert [r['step'] for r in _lines(path)] == [2, 3]  # nothing written into the deleted inode
    assert len([r for r in caplog.records if 'was deleted' in r.getMessage()]) == 1
    assert [r['step'] for r in tail.read_new()] == [2, 3] and not tail.missing  # a new inode is read from 0


def test_lost_records_do_not_read_as_zero_images_per_step():
    metrics = new_metrics()
    update_metrics(metrics, [], complete=False)
    assert 'vision/images_per_step' not in compute_metrics(metrics)
    update_metrics(metrics, [], complete=True)
    assert compute_metrics(metrics)['vision/images_per_step'] == 0.0
    update_metrics(metrics, [_record(1)], complete=False)  # partial: per-image values kept, the count not
    out = compute_metrics(metrics)
    assert 'vision/images_per_step' not in out and out['vision/visual_tokens_per_image_mean'] == 4.0


def test_fork_while_another_thread_holds_the_lock(log_dir):
    path = runlog.geometry_path(str(log_dir))
    _emit([_record(0)])
    held, release = threading.Event(), threading.Event()

    def hold():
        with runlog.STATE.lock:
            held.set()
            release.wait(30)
    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(30)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the holder thread does not exist here
            try:
                _emit([_record(99)])
                os._exit(0)
            except BaseException:
                os._exit(1)
        status = _wait(pid)
    finally:
        release.set()
        thread.join()
    assert status == 0, 'the child deadlocked on the writer lock' if status is None else status
    assert 99 in [r['step'] for r in _lines(path)]


def test_fork_and_thread_stress_keeps_every_line_whole(log_dir):
    path = runlog.geometry_path(str(log_dir))
    stop = threading.Event()
    counts = [0] * 4

    def writer(k):
        while not stop.is_set():
            _emit([{**_record(counts[k]), 'writer': k, 'pad': 'x' * (k * 300)}])
            counts[k] += 1
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    children = []
    try:
        for c in range(20):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    for i in range(50):
                        _emit([{**_record(i), 'child': c}])
                except BaseException:
                    code = 1
                os._exit(code)
            children.append(pid)
    finally:
        statuses = [_wait(pid) for pid in children]
        stop.set()
        for t in threads:
            t.join()
    assert statuses == [0] * 20
    lines = _lines(path)  # every line parses: none torn or interleaved
    assert sum(1 for r in lines if 'child' in r) == 20 * 50
    assert sum(1 for r in lines if 'writer' in r) == sum(counts)


def test_env_reads_what_os_environ_holds_through_every_change(monkeypatch):
    name = 'SWIFT_EXT_TEST_ENV_READ'
    monkeypatch.delenv(name, raising=False)
    assert runlog.env(name) is None
    for value in ('/run/a', '', 'caf\xe9', '/run/\udcff'):  # empty, non-ASCII, an undecodable byte kept as os does
        monkeypatch.setenv(name, value)
        assert runlog.env(name) == os.environ.get(name) == value
    os.environ[name] = '/set/directly'
    assert runlog.env(name) == '/set/directly'
    del os.environ[name]
    assert runlog.env(name) is None
    monkeypatch.setattr(os, 'environ', {name: '/a/mock'})  # a test that replaces os.environ is still read
    assert runlog.env(name) == '/a/mock'
