"""Video rewards: ``video_geometry`` handed to every GeoReward (the template's record of the prompt's encode,
else the header's prediction: the same numbers), ``geo_tiou`` on generated videos, the time axis of ms-swift's
vLLM-mode Qwen3-VL prompts, and never a crash."""
import pickle
from types import SimpleNamespace

import pytest

import swift_ext.plugin  # noqa: F401  (registers the templates and rewards)
from swift_ext import store
from swift_ext.recorder import recorder
from swift_ext.rewards import GeoTIoU, geo_reward
from swift_ext.testing.videos import make_frame_images, make_video
from swift_ext.video_io import video_backend
from swift_ext.video_rows import TIME_AXIS_ENV, predict_source

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')
CLIP = {'video_start': 1.0, 'video_end': 2.5}


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=90, fps=30, width=96, height=72)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv(TIME_AXIS_ENV, raising=False)
    recorder().flush()
    store.reset()
    yield
    recorder().flush()


def _args(template, use_vllm=False):
    return SimpleNamespace(template=template, use_vllm=use_vllm, max_pixels=None)


SEEN = []


@geo_reward('video_probe_for_tests', register=False)
def video_probe(completion, *, image_geometry, video_geometry, settings, **row):
    SEEN.append(video_geometry)
    return 0.5


def _encode(tiny_model, parent, mode, video, row_kwargs=None):
    from swift.model import get_processor
    from swift.template import get_template
    tpl = get_template(get_processor(tiny_model(parent), model_type=parent), template_type=parent + '_geo')
    tpl.set_mode(mode)
    row = {'messages': [{'role': 'user', 'content': '<video>When?'}], 'videos': [video]}
    if row_kwargs:
        row['chat_template_kwargs'] = dict(row_kwargs)
    tpl.encode(row)
    return tpl


@pytest.mark.parametrize('mode', ['transformers', 'vllm'])
@pytest.mark.parametrize('parent', ['qwen2_5_vl', 'qwen3_vl'])
def test_rewards_get_the_rollout_encodes_geometry_and_the_prediction_agrees(tiny_model, clip, parent, mode):
    # PyTorch rollout / vLLM colocate: the template encoded the prompt in this process; server mode: it did not.
    _encode(tiny_model, parent, mode, clip, CLIP)
    reward = video_probe(args=_args(parent + '_geo', use_vllm=mode == 'vllm'))
    SEEN.clear()
    kwargs = {'videos': [[clip]], 'chat_template_kwargs': [dict(CLIP)]}
    assert reward(['x'], **kwargs) == [0.5]
    recorded = SEEN[-1]
    store.reset()  # as the trainer of a vLLM server run: no encode here
    assert reward(['x'], **kwargs) == [0.5]
    predicted = SEEN[-1]
    assert len(recorded) == 1 and recorded[0].to_dict() == predicted[0].to_dict()
    assert recorded[0].timestamp_origin == (1.0 if (parent, mode) == ('qwen3_vl', 'vllm') else 0.0)


def test_samples_without_video_get_an_empty_list(sample_images):
    reward = video_probe(args=_args('qwen2_5_vl_geo'))
    SEEN.clear()
    reward(['x', 'y'], images=[[sample_images['tiny']], None])
    assert SEEN == [[], []]


def test_geo_tiou_scores_the_exact_interval_1(clip):
    reward = GeoTIoU(args=_args('qwen2_5_vl_geo'))
    out = reward(['<answer>1.0 - 2.0</answer>', '[0.5, 2.5]', 'from 00:02 to 00:03', 'no idea'],
                 videos=[[clip]] * 4, solution=[[1.0, 2.0]] * 4)
    assert out[0] == 1.0
    assert out[1] == pytest.approx(0.5)
    assert out[2] == 0.0 and out[3] == 0.0


@pytest.mark.parametrize('axis,expected', [(None, 1.0), ('prompt', 1.0), ('source', 0.0), ('clip', 1.0)])
def test_vllm_qwen3_clip_is_read_on_the_prompts_time_axis(tiny_model, clip, monkeypatch, axis, expected):
    # ms-swift's vLLM mode shows Qwen3-VL a clip starting at 1 s as <0.x seconds>...: a completion on that
    # axis ("0.0 to 1.0") means 1.0 .. 2.0 s of the source video.
    if axis:
        monkeypatch.setenv(TIME_AXIS_ENV, axis)
    geo = predict_source('qwen3_vl_geo', clip, row_kwargs=CLIP, mode='vllm', env={})
    assert geo.timestamp_origin == 1.0 and geo.timestamps[0] == '<0.2 seconds>'
    reward = GeoTIoU(args=_args('qwen3_vl_geo', use_vllm=True))
    out = reward(['<answer>0.0 to 1.0</answer>'], videos=[[clip]], solution=[[1.0, 2.0]],
                 chat_template_kwargs=[dict(CLIP)])
    assert out == [expected]


def test_training_axis_is_the_source_video(clip):
    # PyTorch rollouts (and training) show Qwen3-VL source seconds: "1.0 to 2.0" is exact there.
    reward = GeoTIoU(args=_args('qwen3_vl_geo', use_vllm=False))
    assert reward(['1.0 to 2.0'], videos=[[clip]], solution=[[1.0, 2.0]], chat_template_kwargs=[dict(CLIP)]) == [1.0]


def test_an_image_list_video(tmp_path):
    frames = make_frame_images(str(tmp_path / 'f'), num_frames=6)
    reward = GeoTIoU(args=_args('qwen2_5_vl_geo'))
    assert reward(['[0.5, 1.5]'], videos=[[frames]], solution=[[0.5, 1.5]]) == [1.0]


# Each: (completion, row columns): None and one warning, never an exception.
HOSTILE = {
    'unreadable_video': ('[1, 2]', {'videos': [['/nonexistent/video.mp4']], 'solution': [[1, 2]]}),
    'not_a_video': ('[1, 2]', {'videos': [[b'not a video at all']], 'solution': [[1, 2]]}),
    'no_video': ('[1, 2]', {'solution': [[1, 2]]}),
    'reversed_truth': ('[1, 2]', {'videos': [['CLIP']], 'solution': [[2, 1]]}),
    'truth_outside_clip': ('[1, 2]', {'videos': [['CLIP']], 'solution': [[5, 6]], 'chat_template_kwargs': [CLIP]}),
    'video_index_out_of_range': ('[1, 2]', {'videos': [['CLIP']], 'solution': [[1, 2]], 'video_index': [3]}),
    'video_index_a_string': ('[1, 2]', {'videos': [['CLIP']], 'solution': [[1, 2]], 'video_index': ['0']}),
    'fps_a_string': ('[1, 2]', {'videos': [['CLIP']], 'solution': [[1, 2]], 'chat_template_kwargs': [{'fps': 'x'}]}),
    'clip_of_no_frames': ('[1, 2]', {'videos': [['CLIP']], 'solution': [[1, 2]],
                                     'chat_template_kwargs': [{'video_start': 9.0, 'video_end': 9.5}]}),
    'videos_not_a_list': ('[1, 2]', {'videos': 'CLIP', 'solution': [[1, 2]]}),
}


@pytest.mark.parametrize('case', list(HOSTILE))
def test_hostile_rows_get_none(clip, case):
    completion, columns = HOSTILE[case]
    columns = {k: [[clip if v == 'CLIP' else v for v in x] if isinstance(x, list) else x for x in col]
               if isinstance(col, list) else (clip if col == 'CLIP' else col) for k, col in columns.items()}
    assert GeoTIoU(args=_args('qwen3_vl_geo'))([completion], **columns) == [None]


def test_a_template_without_video_geometry_gives_none(clip):
    assert GeoTIoU(args=_args('internvl_hf_geo'))(['[1, 2]'], videos=[[clip]], solution=[[1, 2]]) == [None]


def test_geo_tiou_pickles():
    clone = pickle.loads(pickle.dumps(GeoTIoU(args=_args('qwen3_vl_geo'))))
    assert clone.template == 'qwen3_vl_geo'
