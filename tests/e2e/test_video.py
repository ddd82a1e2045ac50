"""Real tiny `swift rlhf --rlhf_type grpo` and `swift sft` runs on a generated video-grounding dataset with tiny
Qwen2.5-VL and Qwen3-VL checkpoints: every logged video line and every reward's ``video_geometry`` equal what
qwen-vl-utils' ``fetch_video`` and the model's processor make of each video (the frames sampled, read back from
their pixels; the frame size; ``video_grid_thw``; the time encoding), and ``geo_tiou`` gives a constructed
completion stating the exact interval 1.0."""
import json
import os
import re

import pytest

from swift_ext.testing.videos import make_video_dataset, sampled_indices
from swift_ext.video_io import video_backend

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')
VIDEO_PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'plugins', 'video_probe.py')
VERSIONS = {'qwen2_5_vl': 'v2_5', 'qwen3_vl': 'v3'}


@pytest.fixture(scope='module')
def processors(tiny_model):
    from swift.model import get_processor
    return {p: get_processor(tiny_model(p), model_type=p) for p in VERSIONS}


def _seen(processors, parent, path, row_kwargs, env, *, vllm=False):
    """What the encode's fetch_video and the processor make of ``path``, with qwen-vl-utils patched as the
    run's loader patched it from ``env``: frames (from pixels), size, sample rate, grid, time text."""
    from qwen_vl_utils import fetch_video, vision_process
    saved = {k: getattr(vision_process, k) for k in env}
    for key, value in env.items():
        setattr(vision_process, key, type(saved[key])(value))
    try:
        v3 = VERSIONS[parent] == 'v3'
        kwargs = {'image_patch_size': 16, 'return_video_metadata': True} if v3 else {}
        video, sample_fps = fetch_video({'video': path, **(row_kwargs or {})}, return_video_sample_fps=True,
                                        **kwargs)
    finally:
        for key, value in saved.items():
            setattr(vision_process, key, value)
    metadata = None
    if v3:
        video, metadata = video
    proc = processors[parent]
    out = {'frame_indices': sampled_indices(video), 'resized_height': video.shape[2],
           'resized_width': video.shape[3], 'sample_fps': sample_fps}
    if v3:
        meta = dict(metadata)
        if vllm and meta['frames_indices'][0] > 0:  # ms-swift's vLLM mode rebases them to the clip
            meta['frames_indices'] = [i - meta['frames_indices'][0] for i in meta['frames_indices']]
        encoded = proc(text=['<|vision_start|><|video_pad|><|vision_end|>'], videos=[video], video_metadata=[meta],
                       do_resize=False, do_sample_frames=False, return_tensors='pt')
        out['timestamps'] = re.findall(r'<[0-9.]+ seconds>', proc.tokenizer.decode(encoded['input_ids'][0]))
    else:
        encoded = proc.video_processor(videos=[video], do_resize=False, return_tensors='pt')
        out['second_per_grid_ts'] = 2 / sample_fps
    out['grid'] = encoded['video_grid_thw'][0].tolist()
    out['num_tokens'] = int(encoded['video_grid_thw'][0].prod()) // 4
    return out


def _check(line, expected, where):
    for key, value in expected.items():
        assert line[key] == pytest.approx(value), (where, key, line[key], value)


# The runs' environment, which ms-swift patches into qwen-vl-utils at load: few tokens a frame (a fast run);
# Qwen3-VL also with FPS_MAX_FRAMES=4 (a clamp).
SMALL = {'VIDEO_MIN_TOKEN_NUM': '8', 'VIDEO_MAX_TOKEN_NUM': '16'}
RUNS = [('qwen2_5_vl', SMALL), ('qwen3_vl', {**SMALL, 'FPS_MAX_FRAMES': '4'})]


@pytest.mark.parametrize('parent,env', RUNS)
def test_grpo_on_videos(e2e, tiny_model, processors, tmp_path, parent, env):
    data = make_video_dataset(str(tmp_path / 'data'))
    rows = {json.loads(x)['videos'][0]: json.loads(x) for x in open(data)}
    probe, proc, run_dir = e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=2 * len(rows), env=env,
                                    rewards=('geo_tiou', 'geo_video_probe'), plugins=[VIDEO_PROBE])
    print(f'\n{parent} GRPO step on videos: {e2e.usage(proc)}')
    assert len(probe) == 2 * len(rows) and {p['videos'][0] for p in probe} == set(rows)
    for line in probe:  # what the rewards received: the rollout encode's record (PyTorch rollout: source seconds)
        path = line['videos'][0]
        _check(line['geometry'][0], _seen(processors, parent, path, rows[path].get('chat_template_kwargs'), env),
               path)
        assert line['from_template'] == [True] and line['template'] == parent + '_geo'
        assert line['exact_score'] == 1.0 and 0.0 <= line['completion_score'] <= 1.0
    videos = [r for r in e2e.geometry_log(run_dir) if r.get('kind') == 'video']
    assert {r['mode'] for r in videos} == {'rollout', 'train'} and {r['video'] for r in videos} == set(rows)
    for record in videos:
        assert record['error'] is None and record['mismatch'] is None
        _check(record, _seen(processors, parent, record['video'], rows[record['video']].get('chat_template_kwargs'),
                             env), record['video'])
    assert all(r['step'] == 1 for r in videos if r['mode'] == 'train')
    logged = [json.loads(x) for x in open(os.path.join(run_dir, 'logging.jsonl'))]
    metrics = next(m for m in logged if 'vision/videos_per_step' in m)
    assert metrics['vision/videos_per_step'] == 2 * len(rows)  # every completion's prompt, encoded to train
    if 'FPS_MAX_FRAMES' in env:
        assert metrics['vision/videos_clamped_by_max_frames_frac'] > 0  # FPS_MAX_FRAMES=4 cut the 3-4 s videos


@pytest.mark.parametrize('parent,env', RUNS)
def test_sft_on_videos(e2e, tiny_model, processors, tmp_path, parent, env):
    data = make_video_dataset(str(tmp_path / 'data'), answer=True)
    rows = {json.loads(x)['videos'][0]: json.loads(x) for x in open(data)}
    out = str(tmp_path / 'out')
    proc = e2e.swift('sft', *e2e.train_args(tiny_model(parent), parent, data, out, plugins=[VIDEO_PROBE],
                                            extra=['--per_device_train_batch_size', str(len(rows))]), env=env)
    print(f'\n{parent} SFT step on videos: {e2e.usage(proc)}')
    run_dir = e2e.run_dirs(out)[-1]
    videos = [r for r in e2e.geometry_log(run_dir) if r.get('kind') == 'video']
    trained = [r for r in videos if r['step'] == 1]
    assert sorted(r['video'] for r in trained) == sorted(rows)
    for record in videos:
        assert record['mode'] == 'train' and record['basis'] == 'encode' and record['mismatch'] is None
        _check(record, _seen(processors, parent, record['video'], rows[record['video']].get('chat_template_kwargs'),
                             env), record['video'])
    logged = [json.loads(x) for x in open(os.path.join(run_dir, 'logging.jsonl'))]
    metrics = next(m for m in logged if 'vision/videos_per_step' in m)
    assert metrics['vision/videos_per_step'] == len(rows)
    assert metrics['vision/video_tokens_per_video_max'] == max(r['num_tokens'] for r in trained)
