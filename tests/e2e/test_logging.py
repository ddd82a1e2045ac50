"""Real `swift sft` / `swift rlhf --rlhf_type grpo` runs with `--callbacks geo_log` on the tiny
Qwen2.5-VL, then `swift-ext review`: the geometry log is what the libraries did to each file,
survives a SIGKILL, is complete and untorn with two ranks and dataloader workers, and a
resumed run adds to it without touching the first run's file.

Every run is a CLI subprocess (12-20 s each, nearly all start-up), on small images.
"""
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict

import pytest
from PIL import Image

from swift_ext.steps import trained_steps
from swift_ext.testing.images import box_for, make_dataset

TIMEOUT = 300  # seconds, per CLI run

# GRPO: one prompt of each shape; 2 prompts x 2 generations a step, so 2 steps see all 4.
GRPO_SIZES = (('tiny', 50, 60), ('landscape', 160, 120), ('portrait', 90, 150),
              ('wide', 300, 40))
# SFT: 16 distinct small images (distinct names and sizes), so a record names its sample.
SFT_SIZES = tuple((f'img{i:02d}', 40 + 13 * i, 30 + 11 * ((5 * i) % 16)) for i in range(16))
RUN_PNGS = ('visual_tokens.png', 'megapixels.png', 'vision_metrics.png')


# --- helpers -------------------------------------------------------------------------------------
def sft_dataset(e2e, out_dir) -> str:
    """SFT_SIZES' grounding rows, each with the box as the assistant's answer."""
    return e2e.dataset(out_dir, SFT_SIZES,
                       answer=lambda row: json.dumps([{'bbox_2d': row['solution'], 'label': 'red box'}]))


def sft_args(e2e, model: str, data: str, out: str, *, steps: int, extra=()) -> list[str]:
    """`swift sft` on the tiny Qwen2.5-VL with the user's plugin file and geo_log: 2 samples a step.

    No gradient accumulation: ms-swift's SFT default accumulates to 16 samples a step.
    """
    per_step = ['--per_device_train_batch_size', '2', '--gradient_accumulation_steps', '1', *extra]
    return ['sft', *e2e.train_args(model, 'qwen2_5_vl', data, out, steps=steps, plugins=[e2e.PLUGIN], extra=per_step)]


def step_logs(e2e, run_dir: str) -> list[dict]:
    """logging.jsonl's per-step lines (not the end-of-run summary or final state)."""
    out = []
    for rec in e2e.read_lines(os.path.join(run_dir, 'logging.jsonl')):
        if 'loss' in rec and 'train_runtime' not in rec and 'log_history' not in rec:
            out.append(rec)
    return out


def log_step(rec: dict) -> int:
    return int(rec['global_step/max_steps'].split('/')[0])


def review(e2e, run_dir: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`swift-ext review RUN_DIR --json`: exit code 0, the summary, report.html written."""
    proc = e2e.swift_ext('review', run_dir, '--json', *args, timeout=120)
    assert os.path.isfile(os.path.join(run_dir, 'review', 'report.html'))
    return proc, json.loads(proc.stdout)


def expected_size(path: str) -> tuple[int, int]:
    """What qwen-vl-utils makes of the file as ms-swift calls it (no --max_pixels, no row limit)."""
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image
    return fetch_image({'image': load_image(path)}, image_patch_size=14).size


def check_records(lines: list[dict]) -> None:
    """Each record is what the libraries did to its file: original, resized, grid and tokens."""
    cache: dict[str, tuple[int, int]] = {}
    for r in lines:
        path = r['image']
        if path not in cache:
            cache[path] = expected_size(path)
        w, h = cache[path]
        assert r['error'] is None and r['mismatch'] is None, r
        assert r['template'] == 'qwen2_5_vl_geo'
        assert (r['original_width'], r['original_height']) == Image.open(path).size, r
        assert (r['resized_width'], r['resized_height']) == (w, h), r
        assert r['grid'] == [1, h // 14, w // 14], r
        assert r['num_tokens'] == w * h // 28 ** 2, r


def check_vision_metrics(e2e, run_dir: str, lines: list[dict]) -> None:
    """Each logged step's `vision/` values equal those of the train records tagged with it.

    Exact where encodes happen in the trainer's process between step ends: GRPO, or SFT with
    ``--dataloader_num_workers 0``.
    """
    by_step = defaultdict(list)
    for r in lines:
        if r['mode'] == 'train':
            by_step[r['step']].append(r)
    logs = step_logs(e2e, run_dir)
    assert sorted(log_step(x) for x in logs) == sorted(by_step)
    for rec in logs:
        recs = by_step[log_step(rec)]
        tokens = [r['num_tokens'] for r in recs]
        mp = [r['resized_width'] * r['resized_height'] / 1e6 for r in recs]
        assert rec['vision/images_per_step'] == len(recs)
        assert rec['vision/failed_images_per_step'] == 0
        assert rec['vision/visual_tokens_per_image_mean'] == pytest.approx(
            sum(tokens) / len(tokens), abs=1e-6)
        assert rec['vision/visual_tokens_per_image_max'] == max(tokens)
        assert rec['vision/resized_megapixels_mean'] == pytest.approx(sum(mp) / len(mp), abs=1e-6)
        assert rec['vision/clamped_by_max_pixels_frac'] == 0


def check_review_counts(summary: dict, lines: list[dict]) -> None:
    modes = Counter(r['mode'] for r in lines)
    assert summary['records_by_mode'] == dict(modes)
    assert sum(summary['records_by_mode'].values()) == len(lines)
    assert summary['images'] == modes['train']  # the report describes the train encodes
    assert summary['failures'] == 0 and summary['mismatches'] == 0
    assert not [p for p in summary['problems'] if 'image_geometry' in p], summary['problems']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# --- 1. GRPO and SFT, then review -----------------------------------------------------------------
def test_grpo_geo_log_and_review(e2e, tiny_model, tmp_path):
    data = make_dataset(str(tmp_path / 'data'), sizes=GRPO_SIZES)
    out = str(tmp_path / 'out')
    e2e.swift(*e2e.grpo_args(tiny_model('qwen2_5_vl'), 'qwen2_5_vl', data, out, batch=4, steps=2,
                             plugins=[e2e.PLUGIN], rewards=('geo_iou', 'geo_format'),
                             extra=['--max_completion_length', '4']),
              timeout=TIMEOUT)
    [run_dir] = e2e.run_dirs(out)
    lines = e2e.geometry_log(run_dir)
    # Per step: 2 prompts x 2 generations, each encoded once for the rollout, once for training.
    assert Counter((r['step'], r['mode']) for r in lines) == {
        (1, 'rollout'): 4, (1, 'train'): 4, (2, 'rollout'): 4, (2, 'train'): 4}
    assert {r['rank'] for r in lines} == {0}
    check_records(lines)
    assert {os.path.basename(r['image']) for r in lines} == {
        f'{n}_{w}x{h}.png' for n, w, h in GRPO_SIZES}
    check_vision_metrics(e2e, run_dir, lines)

    # completions.jsonl: the callback's columns hold, row by row, the geometry of the row's
    # own image (found through its solution box), the same as the step's train records.
    by_box = {tuple(box_for(w, h)): f'{n}_{w}x{h}.png' for n, w, h in GRPO_SIZES}
    tables = e2e.read_lines(os.path.join(run_dir, 'completions.jsonl'))
    assert len(tables) == 3  # steps 1, 2, and step 2 again (ms-swift logs its last step twice)
    assert tables[1] == tables[2]
    train = {(r['step'], os.path.basename(r['image'])): r for r in lines if r['mode'] == 'train'}
    for table in tables[:2]:
        assert len(table['step']) == 4
        for i, step in enumerate(table['step']):
            rec = train[(int(step), by_box[tuple(table['solution'][i])])]
            original = f'{rec["original_width"]}x{rec["original_height"]}'
            resized = f'{rec["resized_width"]}x{rec["resized_height"]}'
            assert (table['geo_original_size'][i], table['geo_resized_size'][i]) == (original, resized)
            assert table['geo_visual_tokens'][i] == rec['num_tokens']

    _, summary = review(e2e, run_dir)
    check_review_counts(summary, lines)
    assert summary['problems'] == []
    assert summary['completion_rows'] == 8
    assert summary['completions_joined_by'] == {'column': 8, 'step': 0, 'none': 0}
    assert summary['visual_tokens_per_image']['max'] == max(r['num_tokens'] for r in lines)
    for png in RUN_PNGS + ('rewards.png', 'reward_vs_tokens.png'):
        assert os.path.getsize(os.path.join(run_dir, 'review', png)) > 0, png


@pytest.fixture(scope='module')
def resumed_sft(e2e, tiny_model, tmp_path_factory):
    """An SFT run of 2 steps saving checkpoint-2, then a run resumed from it to step 4.

    Returns (first run dir, second run dir, the first run's geometry file bytes before the
    resume). Module-scoped: the SFT review test reads the first run, the resume test both.
    """
    root = tmp_path_factory.mktemp('resume')
    data = sft_dataset(e2e, root / 'data')
    out = str(root / 'out')
    model = tiny_model('qwen2_5_vl')
    saving = ('--save_strategy', 'steps', '--save_steps', '2')
    e2e.swift(*sft_args(e2e, model, data, out, steps=2, extra=saving), timeout=TIMEOUT)
    [first] = e2e.run_dirs(out)
    before = open(os.path.join(first, 'image_geometry.jsonl'), 'rb').read()
    checkpoint = os.path.join(first, 'checkpoint-2')
    assert os.path.isdir(checkpoint)
    e2e.swift(*sft_args(e2e, model, data, out, steps=4, extra=[*saving, '--resume_from_checkpoint', checkpoint]),
              timeout=TIMEOUT)
    first_again, second = e2e.run_dirs(out)
    assert first_again == first
    return first, second, before


def test_sft_geo_log_and_review(e2e, resumed_sft):
    run_dir = resumed_sft[0]
    lines = e2e.geometry_log(run_dir)
    # No dataloader worker: each step's batch (2 samples, one image each) is encoded once,
    # in the trainer's process, right before the step.
    assert Counter(r['step'] for r in lines) == {1: 2, 2: 2}
    assert {r['mode'] for r in lines} == {'train'}
    check_records(lines)
    check_vision_metrics(e2e, run_dir, lines)
    _, summary = review(e2e, run_dir)
    check_review_counts(summary, lines)
    assert summary['images'] == len(lines) == 4
    assert summary['problems'] == ['completions.jsonl: missing']  # SFT writes none
    for png in RUN_PNGS:
        assert os.path.getsize(os.path.join(run_dir, 'review', png)) > 0, png


# --- 2. SIGKILL mid-run -------------------------------------------------------------------------
def test_sigkill_leaves_whole_lines_and_review_copes(e2e, tiny_model, tmp_path):
    data = sft_dataset(e2e, tmp_path / 'data')
    out = str(tmp_path / 'out')
    # Far more steps than it will live for; one dataloader worker, so the records are
    # written by a second process of the group as well.
    cmd = [e2e.SWIFT, *sft_args(e2e, tiny_model('qwen2_5_vl'), data, out, steps=500,
                                extra=['--dataloader_num_workers', '1'])]
    with open(tmp_path / 'run.log', 'wb') as log:
        proc = subprocess.Popen(cmd, cwd=e2e.ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        path = None
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = e2e.run_dirs(out)
            path = os.path.join(dirs[-1], 'image_geometry.jsonl') if dirs else None
            if path and os.path.exists(path) and open(path, 'rb').read().count(b'\n') >= 6:
                break
            time.sleep(0.2)
        assert proc.poll() is None, e2e.traceback((tmp_path / 'run.log').read_text())
        assert path is not None and os.path.exists(path), 'no geometry lines before the deadline'
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    for _ in range(50):  # the trainer and its dataloader worker die with the group
        if not e2e.group_alive(proc.pid):
            break
        time.sleep(0.1)
    assert e2e.group_alive(proc.pid) == []

    data_ = open(path, 'rb').read()
    whole, _, tail = data_.rpartition(b'\n')
    records = [json.loads(x) for x in whole.split(b'\n')]  # every line but a torn last one
    assert len(records) >= 6
    if tail:  # a write cut short: never seen (one os.write per batch), but allowed
        with pytest.raises(ValueError):
            json.loads(tail)
    check_records(records)

    # A write in flight at the kill, simulated: half a record, no newline.
    torn = json.dumps(records[-1]).encode()[:40]
    with open(path, 'ab') as f:
        f.write(torn)
    _, summary = review(e2e, os.path.dirname(path))
    [geo] = [f for f in summary['files'] if f['file'] == 'image_geometry.jsonl']
    assert geo['truncated_last_line'] and geo['bad_lines'] == 0
    assert 'image_geometry.jsonl: last line is truncated (ignored)' in summary['problems']
    assert summary['images'] == sum(r['mode'] == 'train' for r in records) == len(records)
    # The terminal summary too, with the same exit code.
    proc = e2e.swift_ext('review', os.path.dirname(path), '--no-plots', timeout=120)
    assert 'last line is truncated' in proc.stdout
    assert f'Images (train encodes): {len(records)}' in proc.stdout


# --- 3. Two ranks ---------------------------------------------------------------------------------
def test_two_ranks_with_two_dataloader_workers(e2e, tiny_model, tmp_path):
    data = sft_dataset(e2e, tmp_path / 'data')
    out = str(tmp_path / 'out')
    # `NPROC_PER_NODE=2 swift sft` runs `python -m torch.distributed.run --nproc_per_node 2`.
    # On a machine without a GPU, accelerate makes a multi-process CPU (gloo) run only when
    # told to use the CPU (`--use_cpu true`); without it each rank trains alone, unsynced.
    # 16 samples / (2 ranks x 2 per batch) = 4 steps: exactly one epoch of each rank's shard.
    e2e.swift(*sft_args(e2e, tiny_model('qwen2_5_vl'), data, out, steps=4,
                        extra=['--dataloader_num_workers', '2', '--use_cpu', 'true']),
              env={'NPROC_PER_NODE': '2', 'MASTER_PORT': str(free_port()), 'MASTER_ADDR': '127.0.0.1'},
              timeout=TIMEOUT)
    [run_dir] = e2e.run_dirs(out)
    names = sorted(f for f in os.listdir(run_dir) if f.startswith('image_geometry'))
    assert names == ['image_geometry.jsonl', 'image_geometry.rank1.jsonl']
    per_rank = {0: e2e.read_lines(os.path.join(run_dir, names[0])),
                1: e2e.read_lines(os.path.join(run_dir, names[1]))}  # whole lines that all parse
    trainer_pid = {}  # the settings line each rank's trainer writes when the callback starts
    for s in e2e.read_lines(os.path.join(run_dir, 'geometry_settings.jsonl')):
        trainer_pid.setdefault(s['rank'], s['pid'])
    assert sorted(trainer_pid) == [0, 1]
    trained = {}
    for rank_, lines in per_rank.items():
        # A rank's shard is 8 samples (4 batches) and 4 steps consume all of it: exactly 8 lines, one per
        # sample, written by the workers when they collated (step null), each trained at one step (the
        # batch log says which: 2 images a step).
        assert len(lines) == 4 * 2, rank_
        name = 'image_batches.jsonl' if rank_ == 0 else 'image_batches.rank1.jsonl'
        _, per_step = trained_steps(lines, e2e.read_lines(os.path.join(run_dir, name)))
        assert {s: len(v) for s, v in per_step.items()} == {1: 2, 2: 2, 3: 2, 4: 2}, rank_
        trained[rank_] = per_step
        assert {r['rank'] for r in lines} == {rank_}
        assert {r['mode'] for r in lines} == {'train'}
        # Encoded and written by the rank's two workers (batches go to them in turn), not by
        # its trainer process: two processes appending to one file, no line torn or mixed.
        pids = Counter(r['pid'] for r in lines)
        assert len(pids) == 2 and set(pids.values()) == {4}, pids
        assert trainer_pid[rank_] not in pids
        assert len({json.dumps(r, sort_keys=True) for r in lines}) == len(lines)  # no repeats
        assert len({r['image'] for r in lines}) == len(lines)
        assert {r['step'] for r in lines} == {None}
    images = [{r['image'] for r in per_rank[k]} for k in (0, 1)]
    assert not images[0] & images[1]  # the ranks' shards are disjoint ...
    assert {os.path.basename(p) for p in images[0] | images[1]} == {
        f'{n}_{w}x{h}.png' for n, w, h in SFT_SIZES}  # ... and cover the dataset
    check_records(per_rank[0] + per_rank[1])

    # The metrics are summed over ranks: each step trained 2 images on each rank.
    logs = step_logs(e2e, run_dir)
    assert sorted(log_step(x) for x in logs) == [1, 2, 3, 4]  # one line a step (rank 0)
    assert [x['vision/images_per_step'] for x in logs] == [4.0] * 4

    _, summary = review(e2e, run_dir)
    assert summary['records_by_rank'] == {'0': 8, '1': 8}
    assert summary['images'] == len(per_rank[0]) + len(per_rank[1]) == 16
    check_review_counts(summary, per_rank[0] + per_rank[1])


# --- 4. Resume ------------------------------------------------------------------------------------
def test_resume_appends_without_rewriting(e2e, resumed_sft):
    # ms-swift gives the resumed run a new `v<N>-<timestamp>` folder under the same
    # --output_dir; the geo_log callback follows the trainer's output_dir, so the resumed
    # run's records go to the new folder's file and the first run's file is never opened
    # again. "Appends without rewriting or duplicating" is, concretely: the first file is
    # byte-for-byte unchanged, and the new file holds steps 3 and 4 only (the skipped
    # batches of steps 1-2 are not encoded again).
    first, second, before = resumed_sft
    assert os.path.basename(first).startswith('v0-') and os.path.basename(second).startswith('v1-')
    assert open(os.path.join(first, 'image_geometry.jsonl'), 'rb').read() == before
    old = [json.loads(x) for x in before.splitlines()]
    new = e2e.geometry_log(second)
    assert Counter(r['step'] for r in old) == {1: 2, 2: 2}
    assert Counter(r['step'] for r in new) == {3: 2, 4: 2}
    assert {r['pid'] for r in old}.isdisjoint({r['pid'] for r in new})
    check_records(new)
    check_vision_metrics(e2e, second, new)  # logging.jsonl of the resumed run: steps 3 and 4
    _, summary = review(e2e, second)
    check_review_counts(summary, new)
    assert sorted(summary['per_step']) == ['3', '4']
