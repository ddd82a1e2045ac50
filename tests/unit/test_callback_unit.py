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

from swift_ext import callback, loglines, runlog
from swift_ext.geometry import ImageGeometry
from swift_ext.images import image_key
from swift_ext.recorder import recorder
from swift_ext.settings import default_settings
from swift_ext.store import STORE, row_limits_key, set_active_settings


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


def test_failed_images_count_images_not_encode_attempts():
    # ms-swift tries a failing sample three times: one bad file is one failed image.
    bad = {'mode': 'train', 'error': 'truncated', 'image': '/d/bad.jpg', 'image_index': 1}
    assert callback.step_values([bad, dict(bad), dict(bad)])['failed_images_per_step'] == [1]


def test_every_clamp_name_is_counted():
    from swift_ext.geometry import Clamp
    lines = [rec(clamped=str(c)) for c in Clamp] + [rec()]
    v = callback.step_values(lines)
    assert v['clamped_frac'] == [1.0] * len(Clamp) + [0.0]
    for c in Clamp:
        assert sum(v[f'clamped_by_{c}_frac']) == 1.0


def test_metrics_over_a_logging_interval():
    store = defaultdict(dict)
    store.update(callback.new_metrics(clamps=('max_pixels',)))
    callback.update_metrics(store, [rec(100), rec(300, clamped='max_pixels')])  # step 1
    callback.update_metrics(store, [])  # step 2: no image
    callback.update_metrics(store, [rec(500, 560, 560), rec(error='x')])  # step 3
    logs = compute_like_swift(store)
    assert logs == pytest.approx({
        'vision/visual_tokens_per_image_mean': 300.0,
        'vision/visual_tokens_per_image_max': 500.0,
        'vision/resized_megapixels_mean': (0.0784 * 2 + 0.3136) / 3,
        'vision/clamped_frac': 1 / 3,
        'vision/clamped_by_max_pixels_frac': 1 / 3,
        'vision/images_per_step': 1.0,  # 3 images over 3 steps
        'vision/failed_images_per_step': 1 / 3,
    })
    # Reset after logging: an interval with steps but no image logs only the per-step counts.
    callback.update_metrics(store, [])
    assert compute_like_swift(store) == {'vision/images_per_step': 0.0,
                                         'vision/failed_images_per_step': 0.0}
    assert compute_like_swift(store) == {}  # no step at all: nothing
    callback.update_metrics(store, [rec(100)], complete=False)  # lines of the step unknown: no count
    assert 'vision/images_per_step' not in compute_like_swift(store)


# --- the callback ---------------------------------------------------------------------------------
def swift_like_trainer(**extra):
    """An object with the attributes of ms-swift's trainer that the callback touches."""
    trainer = SimpleNamespace(custom_metrics={'train': defaultdict(dict), 'eval': defaultdict(dict)},
                              template=None, state=TrainerState(), trained=[], **extra)
    trainer.compute_loss = lambda model, inputs, **kw: trainer.trained.append(inputs) or 0.0
    return trainer


@pytest.fixture
def clean_env(monkeypatch):
    # setenv first, so that the value the callback sets is undone after the test.
    for name in (runlog.ENV_DIR, runlog.ENV_CHANNEL, 'RANK'):
        monkeypatch.setenv(name, '0')
        monkeypatch.delenv(name)
    recorder().flush()
    yield
    recorder().flush()
    recorder().trainer = False
    runlog.set_step(None)


def _lines_for(name, n):
    return loglines.ImageLines(mode='train', template='t_geo', sample_id=lambda: name, basis='encode', when=0.0,
                             images=[(GEO, f'/x/{name}{i}.png', i, None, None) for i in range(n)])


def _worker_encodes_and_collates(batches, done):
    # A dataloader worker: encodes rows (fake jobs holding their ids) and collates each batch.
    import torch.utils.data._utils.worker as worker
    worker._worker_info = object()  # get_worker_info() is not None: a dataloader worker collates
    for rows in batches:
        for row in rows:
            recorder().defer(lambda row=row: _lines_for(row['name'], row['images']), (), ids=(row['input_ids'],))
        recorder().collate([r for r in rows if r['images']], {'input_ids': _ids_tensor(rows)}, 'train')
    done.set()


def _ids_tensor(rows):
    import torch
    width = max(len(r['input_ids']) for r in rows)
    return torch.tensor([r['input_ids'] + [0] * (width - len(r['input_ids'])) for r in rows])


GEO = ImageGeometry(original_width=64, original_height=48, resized_width=56, resized_height=56, num_tokens=4)


def test_each_step_counts_the_images_of_the_batches_it_trained_on(tmp_path, clean_env):
    # A worker prefetches four batches before the trainer takes the first (as --dataloader_num_workers
    # does): every step must count its own batch's images, not the step in progress at the encode.
    args = SimpleNamespace(output_dir=str(tmp_path))
    trainer = swift_like_trainer()
    cb = callback.GeoLogCallback(args, trainer)
    assert os.environ[runlog.ENV_DIR] == str(tmp_path)
    assert {'vision/' + k for k in callback.METRICS} <= set(trainer.custom_metrics['train'])
    batches = [[{'name': f'b{b}r{r}', 'input_ids': [b, r, 7], 'images': b + 1} for r in range(2)]
               + [{'name': f'b{b}text', 'input_ids': [b, 9, 9, 9], 'images': 0}] for b in range(4)]
    ctx = multiprocessing.get_context('fork')
    done = ctx.Event()
    worker = ctx.Process(target=_worker_encodes_and_collates, args=(batches, done))
    worker.start()
    worker.join(60)
    assert done.is_set()
    control = TrainerControl()
    cb.on_train_begin(args, trainer.state, control)
    per_step = []
    for rows in batches:
        cb.on_step_begin(args, trainer.state, control)
        trainer.compute_loss(SimpleNamespace(training=True), {'input_ids': _ids_tensor(rows)})
        trainer.state.global_step += 1
        cb.on_step_end(args, trainer.state, control)
        per_step.append(compute_like_swift(trainer.custom_metrics['train'])['vision/images_per_step'])
    assert per_step == [2.0, 4.0, 6.0, 8.0]  # 2 rows x (b + 1) images
    events = [json.loads(x) for x in (tmp_path / runlog.BATCHES_FILE).read_text().splitlines()]
    assert [e['step'] for e in events if e['event'] == 'consume'] == [1, 2, 3, 4]


def test_a_step_whose_batch_is_unknown_leaves_its_counts_out(tmp_path, clean_env, caplog):
    args = SimpleNamespace(output_dir=str(tmp_path))
    trainer = swift_like_trainer()
    cb = callback.GeoLogCallback(args, trainer)
    control = TrainerControl()
    cb.on_step_begin(args, trainer.state, control)
    trainer.compute_loss(SimpleNamespace(training=True), {'input_ids': _ids_tensor([{'input_ids': [5, 5]}])})
    trainer.compute_loss(SimpleNamespace(training=False), {'input_ids': 'eval: not counted'})
    trainer.state.global_step = 1
    with caplog.at_level(logging.WARNING):
        cb.on_step_end(args, trainer.state, control)
    assert 'vision/images_per_step' not in compute_like_swift(trainer.custom_metrics['train'])
    assert 'left out of step 1' in caplog.text and len(trainer.trained) == 2


def test_callback_without_a_metric_store_adds_keys_in_on_log(tmp_path, clean_env):
    args = SimpleNamespace(output_dir=str(tmp_path))
    trainer = SimpleNamespace(state=TrainerState())
    trainer.compute_loss = lambda model, inputs, **kw: 0.0
    cb = callback.GeoLogCallback(args, trainer)
    rows = [{'name': 'a', 'input_ids': [1, 2, 3], 'images': 1}]
    recorder().trainer = True
    recorder().defer(lambda: _lines_for('a', 1), (), ids=(rows[0]['input_ids'],))
    recorder().collate(rows, {'input_ids': _ids_tensor(rows)}, 'train')
    trainer.compute_loss(SimpleNamespace(training=True), {'input_ids': _ids_tensor(rows)})
    trainer.state.global_step = 1
    cb.on_step_end(args, trainer.state, TrainerControl())
    logs = {'loss': 1.0}
    cb.on_log(args, trainer.state, TrainerControl(), logs=logs)
    assert logs['vision/visual_tokens_per_image_mean'] == 4 and logs['vision/images_per_step'] == 1


def test_errors_warn_once_and_never_raise(tmp_path, clean_env, caplog):
    from swift_ext.warn import reset_warnings
    reset_warnings()
    args = SimpleNamespace(output_dir=str(tmp_path))
    cb = callback.GeoLogCallback(args, swift_like_trainer())
    os.makedirs(cb.tails[0].path)  # reading the geometry "file" now fails
    state, control = TrainerState(), TrainerControl()
    with caplog.at_level(logging.WARNING):
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
    from swift_ext import store
    store.reset()  # keep this test's settings and records to it
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


def test_completion_columns_carry_the_image_index(tmp_path, clean_env):
    """Issue 26 item 4: completions.jsonl says which image each row's boxes belong to (swift_ext.truth),
    so review draws a rollout on the image its reward scored."""
    import numpy as np
    samples = [SimpleNamespace(images=[], extra={'image_index': 1}), SimpleNamespace(images=[], extra={}),
               SimpleNamespace(images=[], extra={'image_index': np.int64(2)}),
               SimpleNamespace(images=[], extra={'image_index': 'one'})]
    assert callback.completion_geometry(samples)['geo_image_index'] == [1, None, 2, None]
