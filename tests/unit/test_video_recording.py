"""The `_geo` templates record every video they encode: ms-swift's own Qwen template encodes (training, the
PyTorch engine, vLLM mode) of generated videos whose frames carry their index, byte-identical to the
parent's, and the logged video line equal to what the encode really did: the frames fetch_video sampled
(read back from the pixels), their size, the processor's ``video_grid_thw`` and token run, Qwen2.5-VL's
``second_per_grid_ts``, Qwen3-VL's ``<t seconds>`` text (in vLLM mode: what the Qwen3-VL processor writes
from the frame indices ms-swift hands vLLM)."""
import json
import re
from unittest import mock

import pytest

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import runlog, store
from swift_ext.recorder import recorder
from swift_ext.store import VIDEO_STORE
from swift_ext.testing import contract
from swift_ext.testing.videos import make_frame_images, make_video, sampled_indices
from swift_ext.video_io import predict_from_source, video_backend
from swift_ext.video_record import store_key, video_entry

torch = pytest.importorskip('torch')
qwen_vl_utils = pytest.importorskip('qwen_vl_utils')

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')

# parent -> (ms-swift version, the video pad token)
QWEN = {'qwen2_vl': ('v2', '<|video_pad|>'), 'qwen2_5_vl': ('v2_5', '<|video_pad|>'),
        'qwen3_vl': ('v3', '<|video_pad|>'), 'qwen3_5': ('v3', '<|video_pad|>')}
ROWS = {'whole': None, 'clip': {'video_start': 1.0, 'video_end': 2.5}, 'fps4': {'fps': 4.0},
        'nframes': {'nframes': 6}, 'late_start': {'video_start': 1.7}, 'max_pixels': {'max_pixels': 150000}}
MODES = ('train', 'transformers', 'vllm')


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=90, fps=30, width=96, height=72)


@pytest.fixture(scope='module')
def frames(tmp_path_factory):
    return make_frame_images(str(tmp_path_factory.mktemp('f')), num_frames=5, width=64, height=48)


@pytest.fixture(scope='module')
def templates(tiny_model):
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    processors, cache = {}, {}

    def get(name, mode):
        parent = name.removesuffix('_geo')
        if parent not in processors:
            processors[parent] = get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type'])
        if (name, mode) not in cache:
            tpl = get_template(processors[parent], template_type=name)
            tpl.set_mode(mode)
            cache[name, mode] = tpl
        return cache[name, mode]
    return get


@pytest.fixture(autouse=True)
def _fresh():
    recorder().flush()
    store.reset()
    yield
    recorder().flush()


def _row(video, row_kwargs, answer=True):
    row = {'messages': [{'role': 'user', 'content': '<video>When does it happen?'}], 'videos': [video]}
    if answer:
        row['messages'].append({'role': 'assistant', 'content': '[1.0, 2.0]'})
    if row_kwargs:
        row['chat_template_kwargs'] = dict(row_kwargs)
    return row


def _encode_spied(tpl, row):
    """The template's encode, and the frames (and rate) the real fetch_video returned to it."""
    seen, real = [], qwen_vl_utils.fetch_video

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out)
        return out
    with mock.patch.object(qwen_vl_utils, 'fetch_video', spy):
        encoded = tpl.encode(row)
    (video, sample_fps), = seen
    return encoded, (video[0] if isinstance(video, tuple) else video), sample_fps


def _video_lines(log_dir):
    recorder().flush()
    path = log_dir / runlog.GEOMETRY_FILE
    return [x for x in map(json.loads, path.read_text().splitlines())] if path.exists() else []


def _qwen3_stamps(tpl, handed, metadata):
    """The ``<t seconds>`` text the Qwen3-VL processor writes for frames and metadata (vLLM runs it so)."""
    proc = tpl.processor
    out = proc(text=['<|vision_start|><|video_pad|><|vision_end|>'], videos=[handed], video_metadata=[metadata],
               do_resize=False, do_sample_frames=False, return_tensors='pt')
    return re.findall(r'<[0-9.]+ seconds>', proc.tokenizer.decode(out['input_ids'][0]))


@pytest.mark.parametrize('row_name', list(ROWS))
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('parent', list(QWEN))
def test_the_video_line_is_what_the_encode_did(templates, clip, log_dir, parent, mode, row_name):
    version, pad = QWEN[parent]
    row = _row(clip, ROWS[row_name], answer=mode == 'train')
    expected = templates(parent, mode).encode(_row(clip, ROWS[row_name], answer=mode == 'train'))
    encoded, frames, sample_fps = _encode_spied(templates(parent + '_geo', mode), row)
    contract.assert_same_encode(expected, encoded)  # byte-identical to the parent, in every mode
    (line,) = [x for x in _video_lines(log_dir) if x.get('kind') == 'video']
    assert line['frame_indices'] == sampled_indices(frames)  # the frames really sampled, from their pixels
    assert (line['resized_height'], line['resized_width']) == tuple(frames.shape[-2:])
    assert len(line['frame_indices']) == frames.shape[0]
    assert line['sample_fps'] == pytest.approx(sample_fps, rel=1e-12)
    assert line['frame_times'] == pytest.approx([i / line['video_fps'] for i in line['frame_indices']])
    assert line['template'] == parent + '_geo' and line['mismatch'] is None and line['error'] is None
    if mode == 'vllm':
        assert line['basis'] == 'handed_video' and line['mode'] == 'rollout'
        handed = encoded['videos'][0]
        if version == 'v3':  # what vLLM's Qwen3-VL processor writes from the indices ms-swift hands it
            handed, metadata = handed
            assert line['timestamps'] == _qwen3_stamps(templates(parent, mode), handed, metadata)
            base = round(line['timestamp_origin'] * line['video_fps'])
            assert metadata['frames_indices'] == [i - base for i in line['frame_indices']]
        kwargs = {'video_metadata': [metadata]} if version == 'v3' else {}
        processed = templates(parent, mode).processor.video_processor(
            videos=[handed], return_tensors='pt', do_resize=False, do_sample_frames=False, **kwargs)
        grid = processed['video_grid_thw'][0]
        assert line['grid'] == grid.tolist()
    else:
        assert line['basis'] == 'encode' and line['timestamp_origin'] == 0.0
        assert line['grid'] == encoded['video_grid_thw'][0].tolist()
        tokens = templates(parent, mode).tokenizer.convert_tokens_to_ids(pad)
        assert line['num_tokens'] == encoded['input_ids'].count(tokens)
        if version == 'v2_5':
            assert [line['second_per_grid_ts']] == encoded['second_per_grid_ts']
        if version == 'v3':
            text = templates(parent, mode).tokenizer.decode(encoded['input_ids'])
            assert line['timestamps'] == re.findall(r'<[0-9.]+ seconds>', text)
    # the geometry rewards look up is the line's
    geo = VIDEO_STORE.get(video_entry(clip).key, store_key(ROWS[row_name], mode), parent + '_geo')
    assert geo.to_dict() == {k: line[k] for k in geo.to_dict()}
    # and the header-only prediction agrees with it
    assert predict_from_source(clip, version=version, mode=mode, row_kwargs=ROWS[row_name]).to_dict() == geo.to_dict()


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('parent', ['qwen2_5_vl', 'qwen3_vl'])
def test_an_image_list_video(templates, frames, log_dir, parent, mode):
    # Five frame files: fetch_video pads to six with the last; the line says so.
    row = _row(frames, None, answer=mode == 'train')
    expected = templates(parent, mode).encode(_row(frames, None, answer=mode == 'train'))
    encoded, handed, _ = _encode_spied(templates(parent + '_geo', mode), row)
    contract.assert_same_encode(expected, encoded)
    (line,) = [x for x in _video_lines(log_dir) if x.get('kind') == 'video']
    assert sampled_indices(handed) == [0, 1, 2, 3, 4, 4] and line['padded_frames'] == 1 and line['image_list']
    assert line['frame_indices'] == [0, 1, 2, 3, 4, 5] and line['video'].startswith('frames:')
    assert (line['resized_height'], line['resized_width']) == tuple(handed.shape[-2:])
    assert (line['original_width'], line['original_height']) == (64, 48)


def test_a_video_beside_an_image(templates, clip, sample_images, log_dir):
    # One encode, an image line and a video line, the same row and encode number (the step join needs both).
    row = {'messages': [{'role': 'user', 'content': '<image><video>Where and when?'},
                        {'role': 'assistant', 'content': 'x'}], 'images': [sample_images['landscape']],
           'videos': [clip]}
    tpl = templates('qwen2_5_vl_geo', 'train')
    expected = templates('qwen2_5_vl', 'train').encode(dict(row, messages=list(row['messages'])))
    contract.assert_same_encode(expected, tpl.encode(row))
    image, video = _video_lines(log_dir)
    assert 'kind' not in image and image['image_index'] == 0
    assert video['kind'] == 'video' and video['video_index'] == 0
    assert (image['encode'], image['sample_id']) == (video['encode'], video['sample_id'])


def test_a_broken_video_is_refused_by_name_and_logged(templates, tmp_path, log_dir):
    from swift_ext.geometry import VideoError
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'\x00\x00\x00\x18ftypmp42' + b'\x00' * 200)
    with pytest.raises(VideoError, match=r'broken\.mp4: not a readable video'):
        templates('qwen2_5_vl_geo', 'train').encode(_row(str(bad), None))
    lines = _video_lines(log_dir)
    assert len(lines) == 3  # ms-swift's Template.encode tries an encode three times (retry_decorator)
    for line in lines:
        assert line['kind'] == 'video' and line['video_index'] == 0 and line['video'].endswith('broken.mp4')
        assert 'broken.mp4: not a readable video' in line['error'] and 'image' not in line


def test_a_video_encode_before_the_run_log_is_not_logged(templates, clip, tmp_path, monkeypatch):
    # ms-swift encodes a sample to print it before the trainer names the run folder: stored, not logged.
    monkeypatch.delenv(runlog.ENV_DIR, raising=False)
    monkeypatch.delenv(runlog.ENV_CHANNEL, raising=False)
    templates('qwen3_vl_geo', 'train').encode(_row(clip, None))
    recorder().flush()
    assert VIDEO_STORE.get(video_entry(clip).key, store_key(None, 'train'), 'qwen3_vl_geo') is not None


@pytest.mark.parametrize('row_name', ['whole', 'clip'])
@pytest.mark.parametrize('mode', ['train', 'vllm'])
@pytest.mark.parametrize('parent,version', [('qwen2_5_omni', 'omni_v2_5'), ('qwen3_omni', 'omni_v3')])
def test_omni_video_lines(templates, clip, log_dir, parent, version, mode, row_name):
    # The Omni templates fetch with qwen_omni_utils (the same source as qwen-vl-utils 0.0.14).
    qwen_omni_utils = pytest.importorskip('qwen_omni_utils')
    row = _row(clip, ROWS[row_name], answer=mode == 'train')
    expected = templates(parent, mode).encode(_row(clip, ROWS[row_name], answer=mode == 'train'))
    seen, real = [], qwen_omni_utils.fetch_video

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]
    with mock.patch.object(qwen_omni_utils, 'fetch_video', spy):
        encoded = templates(parent + '_geo', mode).encode(row)
    contract.assert_same_encode(expected, encoded)
    (frames, sample_fps), = seen
    (line,) = [x for x in _video_lines(log_dir) if x.get('kind') == 'video']
    assert line['frame_indices'] == sampled_indices(frames)
    assert (line['resized_height'], line['resized_width']) == tuple(frames.shape[-2:])
    assert line['second_per_grid_ts'] == pytest.approx(2 / sample_fps)
    if mode == 'train':
        assert line['grid'] == encoded['video_grid_thw'][0].tolist()
        assert [line['second_per_grid_ts']] == pytest.approx(encoded['video_second_per_grid'].tolist())
    assert predict_from_source(clip, version=version, mode=mode, row_kwargs=ROWS[row_name]).frame_indices == \
        tuple(line['frame_indices'])
