"""Predicted video geometry against ms-swift 4.6's own Qwen template encodes of generated videos: frames
sampled (read back from the pixels fetch_video handed the template), grid, tokens, and the model's time
encoding (Qwen2.5-VL ``second_per_grid_ts``, Qwen3-VL ``<t seconds>``), in training and in vLLM mode;
and the image path imports no video package."""
import json
import re
import subprocess
import sys
from unittest import mock

import pytest

from swift_ext.testing.videos import make_video, sampled_indices
from swift_ext.video_io import predict_from_source, video_backend

torch = pytest.importorskip('torch')
qwen_vl_utils = pytest.importorskip('qwen_vl_utils')

VIDEO_PAD = 151656
ROWS = [None, {'video_start': 1.0, 'video_end': 4.0}, {'fps': 4.0}, {'nframes': 6}, {'video_start': 2.5},
        {'max_pixels': 150000}]


def _reader_works():
    try:
        from qwen_vl_utils.vision_process import VIDEO_READER_BACKENDS, get_video_reader_backend
        return get_video_reader_backend() in VIDEO_READER_BACKENDS and video_backend() != 'torchvision'
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _reader_works(), reason='no video reader (install swift-ext[video]: decord)')


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=180, fps=30, width=96, height=72)


@pytest.fixture(scope='module')
def templates(tiny_model):
    from swift.model import get_processor
    from swift.template import get_template
    cache = {}

    def get(name, mode):
        if (name, mode) not in cache:
            tpl = get_template(get_processor(tiny_model(name), model_type=name), template_type=name)
            tpl.set_mode(mode)
            cache[name, mode] = tpl
        return cache[name, mode]
    return get


def _encode(tpl, video, row_kwargs):
    """The template's encode, and the frames fetch_video returned to it (a spy on the real function)."""
    seen = []
    real = qwen_vl_utils.fetch_video

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out)
        return out

    row = {'messages': [{'role': 'user', 'content': '<video>When does it happen?'},
                        {'role': 'assistant', 'content': '[1.0, 2.0]'}], 'videos': [video]}
    if row_kwargs:
        row['chat_template_kwargs'] = dict(row_kwargs)
    with mock.patch.object(qwen_vl_utils, 'fetch_video', spy):
        encoded = tpl.encode(row)
    (frames, _), = seen
    return encoded, frames[0] if isinstance(frames, tuple) else frames


@pytest.mark.parametrize('row_kwargs', ROWS)
@pytest.mark.parametrize('name,version', [('qwen2_vl', 'v2'), ('qwen2_5_vl', 'v2_5'), ('qwen3_vl', 'v3')])
def test_training_encode_is_the_prediction(templates, video, name, version, row_kwargs):
    tpl = templates(name, 'train')
    geo = predict_from_source(video, version=version, row_kwargs=row_kwargs)
    encoded, frames = _encode(tpl, video, row_kwargs)
    assert sampled_indices(frames) == list(geo.frame_indices)
    assert tuple(encoded['video_grid_thw'][0].tolist()) == geo.grid
    assert encoded['input_ids'].count(VIDEO_PAD) == geo.num_tokens
    if version == 'v2_5':
        assert encoded['second_per_grid_ts'] == [geo.second_per_grid_ts]
    if version == 'v3':
        text = tpl.processor.tokenizer.decode(encoded['input_ids'])
        assert tuple(re.findall(r'<[0-9.]+ seconds>', text)) == geo.timestamps


def test_a_row_qwen_vl_utils_refuses_is_refused(templates, video):
    # max_pixels under the per-frame minimum: smart_resize's assert in the encode, a named error here.
    from swift_ext.geometry import VideoError
    with pytest.raises(VideoError, match='`max_pixels` must be >= `min_pixels`'):
        predict_from_source(video, version='v2_5', row_kwargs={'max_pixels': 60000})
    with pytest.raises(AssertionError, match='max_pixels'):
        _encode(templates('qwen2_5_vl', 'train'), video, {'max_pixels': 60000})


@pytest.mark.parametrize('row_kwargs', [{'video_start': 1.0, 'video_end': 4.0}, None])
def test_vllm_mode_rebases_qwen3_frame_indices(templates, video, row_kwargs):
    # ms-swift 4.6 hands vLLM frames_indices shifted to the clip's first frame; training keeps them.
    encoded = templates('qwen3_vl', 'vllm').encode(
        {'messages': [{'role': 'user', 'content': '<video>When?'}], 'videos': [video],
         **({'chat_template_kwargs': dict(row_kwargs)} if row_kwargs else {})})
    (_, metadata), = encoded['videos']
    geo = predict_from_source(video, version='v3', mode='vllm', row_kwargs=row_kwargs)
    base = round(geo.timestamp_origin * geo.video_fps)
    assert metadata['frames_indices'] == [i - base for i in geo.frame_indices]
    assert encoded['mm_processor_kwargs'] == {'do_resize': False, 'do_sample_frames': False}
    if row_kwargs:
        train = predict_from_source(video, version='v3', row_kwargs=row_kwargs)
        assert base == 30 and geo.timestamps != train.timestamps


IMAGE_ONLY = """
import json, sys
import swift_ext, swift_ext.plugin
from swift.model import get_processor
from swift.template import get_template
tpl = get_template(get_processor(sys.argv[1], model_type='qwen2_5_vl'), template_type='qwen2_5_vl_geo')
tpl.set_mode('train')
tpl.encode({'messages': [{'role': 'user', 'content': '<image>Where?'}, {'role': 'assistant', 'content': 'x'}],
            'images': [sys.argv[2]]})
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('av', 'decord', 'torchcodec', 'imageio_ffmpeg')
                        or m == 'swift_ext.video_io')))
"""


def test_image_path_imports_no_video_package(tiny_model, sample_images):
    # The [video] extra (decord / torchcodec) and PyAV stay unimported by an image encode.
    out = subprocess.run([sys.executable, '-c', IMAGE_ONLY, tiny_model('qwen2_5_vl'), sample_images['landscape']],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
