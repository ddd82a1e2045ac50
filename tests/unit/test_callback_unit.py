"""The `geo_log` callback's parts: the incremental file reader, the step metrics, and the
metric objects as ms-swift's own ``compute_custom_metrics`` turns them into log keys.

A real `swift sft` run (see the report of this module's author, and the end-to-end tests)
proves the keys reach logging.jsonl; these tests pin the arithmetic."""
import json
import logging
import multiprocessing
import os
from collections import defaultdict, deque
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from swift_ext import callback, runlog
from swift_ext.geometry import ImageGeometry
from swift_ext.images import image_key
from swift_ext.records import STORE, row_limits_key, set_active_settings
from swift_ext.settings import default_settings


def rec(tokens=100, width=280, height=280, mode='train', clamped=None, tiles=None, error=None):
    """A geometry line as the templates write it (only the fields the callback reads)."""
    if error:
        return {'mode': mode, 'error': error}
    return {'mode': mode, 'num_tokens': tokens, 'resized_width': width, 'resized_height': height,
            'clamped': clamped, 'tile_cols': None if tiles is None else 1,
            'num_tiles': 1 if tiles is None else tiles, 'error': None}


def line(r) -> bytes:
    return (json.dumps(r) + '\n').encode()


# --- GeoFileTail ---------------------------------------------------------------------------------
class TestGeoFileTail:
    def test_missing_file_reads_nothing(self, tmp_path):
        assert runlog.GeoFileTail(str(tmp_path / 'none.jsonl')).read_new() == []

    def test_reads_only_what_is_new(self, tmp_path):
        path = tmp_path / 'g.jsonl'
        path.write_bytes(line(rec(1)) + line(rec(2)))
        tail = runlog.GeoFileTail(str(path))
        assert [r['num_tokens'] for r in tail.read_new()] == [1, 2]
        assert tail.read_new() == []
        with open(path, 'ab') as f:
            f.write(line(rec(3)))
        assert [r['num_tokens'] for r in tail.read_new()] == [3]

    def test_torn_last_line_waits_until_complete(self, tmp_path):
        path = tmp_path / 'g.jsonl'
        whole = line(rec(5))
        path.write_bytes(line(rec(4)) + whole[:10])  # a write in progress
        tail = runlog.GeoFileTail(str(path))
        assert [r['num_tokens'] for r in tail.read_new()] == [4]
        assert tail.read_new() == []  # still torn: nothing, and no bad line counted
        with open(path, 'ab') as f:
            f.write(whole[10:])
        assert [r['num_tokens'] for r in tail.read_new()] == [5]
        assert tail.bad_lines == 0

    def test_from_end_skips_earlier_lines(self, tmp_path):
        path = tmp_path / 'g.jsonl'
        path.write_bytes(line(rec(1)))
        tail = runlog.GeoFileTail(str(path), from_end=True)
        assert tail.read_new() == []
        with open(path, 'ab') as f:
            f.write(line(rec(2)))
        assert [r['num_tokens'] for r in tail.read_new()] == [2]

    def test_bad_line_is_counted_and_skipped(self, tmp_path):
        path = tmp_path / 'g.jsonl'
        path.write_bytes(line(rec(1)) + b'{oops\n' + line(rec(2)))
        tail = runlog.GeoFileTail(str(path))
        assert [r['num_tokens'] for r in tail.read_new()] == [1, 2]
        assert tail.bad_lines == 1

    def test_replaced_file_is_read_from_the_start(self, tmp_path):
        path = tmp_path / 'g.jsonl'
        path.write_bytes(line(rec(1)) + line(rec(2)))
        tail = runlog.GeoFileTail(str(path))
        tail.read_new()
        path.write_bytes(line(rec(9)))
        assert [r['num_tokens'] for r in tail.read_new()] == [9]


# --- step metrics ---------------------------------------------------------------------------------
def test_step_values():
    records = [rec(100, 280, 280, clamped='max_pixels'), rec(300, 560, 280), rec(7, mode='rollout'),
               rec(error='missing'), rec(error='also missing', mode='rollout')]
    v = callback.step_values(records)
    assert v['visual_tokens_per_image_mean'] == [100, 300]  # rollout encodes left out
    assert v['resized_megapixels_mean'] == [0.0784, 0.1568]
    assert v['clamped_by_max_pixels_frac'] == [1.0, 0.0]
    assert v['images_per_step'] == [2]
    assert v['failed_images_per_step'] == [1]
    assert 'tiles_per_image_mean' not in v  # Qwen: no tiles


def test_tiles_only_for_tiled_images():
    v = callback.step_values([rec(256 * 5, tiles=5), rec(256, tiles=1)])
    assert v['tiles_per_image_mean'] == [5, 1]


def compute_like_swift(metrics):
    """The metrics as ms-swift's trainer turns its custom_metrics store into log keys."""
    from swift.trainers.mixin import SwiftMixin
    return SwiftMixin.compute_custom_metrics(metrics)


def test_metrics_over_a_logging_interval():
    store = defaultdict(dict)
    store.update(callback.new_metrics())
    callback.update_metrics(store, [rec(100), rec(300, clamped='max_pixels')])  # step 1
    callback.update_metrics(store, [])  # step 2: no image
    callback.update_metrics(store, [rec(500, 560, 560), rec(error='x')])  # step 3
    logs = compute_like_swift(store)
    assert logs == pytest.approx({
        'vision/visual_tokens_per_image_mean': 300.0,
        'vision/visual_tokens_per_image_max': 500.0,
        'vision/resized_megapixels_mean': (0.0784 * 2 + 0.3136) / 3,
        'vision/clamped_by_max_pixels_frac': 1 / 3,
        'vision/images_per_step': 1.0,  # 3 images over 3 steps
        'vision/failed_images_per_step': 1 / 3,
    })
    # Reset after logging: an interval with steps but no image logs only the per-step counts.
    callback.update_metrics(store, [])
    assert compute_like_swift(store) == {'vision/images_per_step': 0.0,
                                         'vision/failed_images_per_step': 0.0}
    assert compute_like_swift(store) == {}  # no step at all: nothing


# --- the callback ---------------------------------------------------------------------------------
def swift_like_trainer(**extra):
    """An object with the attributes of ms-swift's trainer that the callback touches."""
    return SimpleNamespace(custom_metrics={'train': defaultdict(dict), 'eval': defaultdict(dict)},
                           template=None, **extra)


@pytest.fixture
def clean_env(monkeypatch):
    # setenv first, so that the value the callback sets is undone after the test.
    for name in (runlog.ENV_DIR, 'RANK'):
        monkeypatch.setenv(name, '0')
        monkeypatch.delenv(name)
    yield
    runlog.set_step(None)


def _child_emit(ready, done):
    ready.wait(10)
    runlog.emit([{'step': runlog.STATE.step, 'mode': 'train', 'num_tokens': 64,
                  'resized_width': 224, 'resized_height': 224, 'error': None}])
    done.set()


def test_callback_routes_records_and_fills_the_store(tmp_path, clean_env):
    args = SimpleNamespace(output_dir=str(tmp_path))
    trainer = swift_like_trainer()
    cb = callback.GeoLogCallback(args, trainer)
    assert os.environ[runlog.ENV_DIR] == str(tmp_path)
    assert set(trainer.custom_metrics['train']) == {'vision/' + k for k in callback.METRICS}
    state, control = TrainerState(), TrainerControl()
    cb.on_train_begin(args, state, control)
    # A dataloader worker forked before the step starts still sees the step (shared memory).
    ctx = multiprocessing.get_context('fork')
    ready, done = ctx.Event(), ctx.Event()
    worker = ctx.Process(target=_child_emit, args=(ready, done))
    worker.start()
    cb.on_step_begin(args, state, control)  # step 1 in progress
    ready.set()
    worker.join(10)
    assert done.is_set()
    state.global_step = 1
    cb.on_step_end(args, state, control)
    lines = (tmp_path / runlog.GEOMETRY_FILE).read_text().splitlines()
    assert json.loads(lines[0])['step'] == 1
    logs = compute_like_swift(trainer.custom_metrics['train'])
    assert logs['vision/visual_tokens_per_image_mean'] == 64
    assert logs['vision/images_per_step'] == 1.0
    assert runlog.STATE.step == 2  # what is fetched next belongs to step 2


def test_callback_without_a_metric_store_adds_keys_in_on_log(tmp_path, clean_env):
    args = SimpleNamespace(output_dir=str(tmp_path))
    cb = callback.GeoLogCallback(args, SimpleNamespace())
    runlog.emit([rec(40)])
    state, control = TrainerState(), TrainerControl()
    state.global_step = 1
    cb.on_step_end(args, state, control)
    logs = {'loss': 1.0}
    cb.on_log(args, state, control, logs=logs)
    assert logs['vision/visual_tokens_per_image_mean'] == 40


def test_errors_warn_once_and_never_raise(tmp_path, clean_env, caplog):
    args = SimpleNamespace(output_dir=str(tmp_path))
    cb = callback.GeoLogCallback(args, swift_like_trainer())
    os.makedirs(cb.tail.path)  # reading the geometry "file" now fails
    state, control = TrainerState(), TrainerControl()
    with caplog.at_level(logging.WARNING, logger='swift_ext.callback'):
        cb.on_step_end(args, state, control)
        cb.on_step_end(args, state, control)
    warnings = [r for r in caplog.records if 'on_step_end failed' in r.getMessage()]
    assert len(warnings) == 1


def test_register_callbacks_is_idempotent():
    from swift.callbacks import callbacks_map
    assert callback.register_callbacks() == ['geo_log']
    assert callback.register_callbacks() == ['geo_log']
    assert callbacks_map['geo_log'] is callback.GeoLogCallback


# --- GRPO completions table ---------------------------------------------------------------------------
def test_completion_columns(tmp_path, clean_env, monkeypatch):
    from swift_ext import records
    records.reset()  # keep this test's settings and records to it
    settings = default_settings('qwen2_5_vl')
    set_active_settings(settings)
    image = str(tmp_path / 'a.png')
    geo = ImageGeometry(original_width=640, original_height=480, resized_width=644,
                        resized_height=476, num_tokens=391)
    STORE.put(os.path.abspath(image), row_limits_key(None), settings.template, geo)
    samples = [SimpleNamespace(images=[image], extra={}),
               SimpleNamespace(images=[image, image], extra={}),
               SimpleNamespace(images=[str(tmp_path / 'unseen.png')], extra={}),
               SimpleNamespace(images=[], extra={})]
    # A stand-in for GRPO's trainer: its _logs / _log_rollout / _gather_and_flatten contract.
    trainer = swift_like_trainer(
        _logs={'prompt': deque(maxlen=8)}, log_completions=True,
        args=SimpleNamespace(generation_batch_size=8),
        _gather_and_flatten=lambda values, flatten_level=0: list(values))
    trainer._log_rollout = lambda s: trainer._logs['prompt'].extend('p' * len(s))
    cb = callback.GeoLogCallback(SimpleNamespace(output_dir=str(tmp_path)), trainer)
    cb.on_train_begin(cb.args, TrainerState(), TrainerControl())
    trainer._log_rollout(samples)
    assert list(trainer._logs['geo_original_size']) == ['640x480', '640x480;640x480', None, None]
    assert list(trainer._logs['geo_resized_size']) == ['644x476', '644x476;644x476', None, None]
    assert list(trainer._logs['geo_visual_tokens']) == [391, 782, None, None]
    key = image_key(image)  # the `image` of its image_geometry.jsonl lines: how review finds the file
    assert list(trainer._logs['geo_image']) == [key, f'{key};{key}', None, None]
    assert len(trainer._logs['prompt']) == 4
