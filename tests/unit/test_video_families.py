"""Video beyond Qwen: families whose HF video processor samples the frames (GLM-4.5V, Gemma 4, MiniCPM-V 4.6,
InternVL-hf) record, from the real encode, the frames the processor sampled (against the processor's own
``video_metadata.frames_indices``, called as ms-swift calls it), their times, size and tokens; encodes stay
byte-identical. What the other templates do with a video is pinned too (``swift-ext templates``' column)."""
import json
import re

import pytest

import swift_ext.plugin  # noqa: F401
from swift_ext import runlog, store
from swift_ext.families import describe
from swift_ext.recorder import recorder
from swift_ext.testing import contract
from swift_ext.testing.videos import make_video
from swift_ext.video_io import video_backend

torch = pytest.importorskip('torch')
pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')

# parent -> (the video token, how ms-swift hands the processor the video, the time text pattern or None)
SAMPLED = {'glm4_5v': ('<|image|>', 'loaded_with_metadata', r'<\|end_of_image\|>(\d+)'),
           'gemma4': ('<|video|>', 'path', r'(\d{2}:\d{2}) <\|image>'),
           'minicpmv4_6': ('<|video_pad|>', 'path', None),
           'internvl_hf': ('<IMG_CONTEXT>', 'loaded', None)}
REFUSED = ('glm4v', 'llava_onevision_hf', 'llava1_6_mistral_hf', 'gemma3_vision', 'paddle_ocr_1_5', 'mistral_2503')
IGNORED = ('idefics3', 'pixtral')


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    # 40 frames: Gemma4VideoProcessor refuses a video of fewer frames than its num_frames (32).
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=40, fps=10, width=96, height=72)


@pytest.fixture(scope='module')
def templates(tiny_model):
    from swift.model import get_processor
    from swift.template import get_template

    from swift_ext.testing.tiny import run_flags
    cache = {}

    def get(name):
        parent = name.removesuffix('_geo')
        if name not in cache:
            proc = get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type'])
            cache[name] = get_template(proc, template_type=name)
            cache[name].set_mode('train')
        return cache[name]
    return get


@pytest.fixture(autouse=True)
def _fresh():
    recorder().flush()
    store.reset()
    yield
    recorder().flush()


def _row(video):
    return {'messages': [{'role': 'user', 'content': '<video>When does it happen?'},
                         {'role': 'assistant', 'content': '<answer>1 - 2</answer>'}], 'videos': [video]}


def _processor_view(tpl, video, how):
    """The video processor's output and metadata for ``video``, called the way ms-swift's template calls it."""
    from swift.template.vision_utils import load_video_hf
    vp = tpl.processor.video_processor
    if how == 'loaded_with_metadata':  # GLM4_5VTemplate: load_video_hf, then the processor with the metadata
        frames, metadata = load_video_hf([video])
        out = vp(videos=[frames], video_metadata=[metadata], return_metadata=True, return_tensors='pt')
    elif how == 'loaded':  # InternvlhfTemplate: load_video_hf, then the video processor
        frames, _ = load_video_hf([video])
        out = vp(videos=frames, return_metadata=True, return_tensors='pt')
    else:  # Gemma4Template / MiniCPMV4_6Template: the path, with the template's sampling arguments
        kwargs = {k: getattr(tpl, k) for k in ('max_num_frames', 'stack_frames') if hasattr(tpl, k)}
        out = vp(videos=[video], return_metadata=True, return_tensors='pt', **kwargs)
    return out, out['video_metadata'][0]


@pytest.mark.parametrize('parent', list(SAMPLED))
def test_the_video_line_is_what_the_processor_did(templates, clip, log_dir, parent):
    token, how, stamp = SAMPLED[parent]
    if how == 'path':
        from transformers.utils import is_torchcodec_available
        if not is_torchcodec_available():
            pytest.skip(f'{parent}: ms-swift hands transformers the path, and transformers decodes videos with '
                        'torchcodec only (swift-ext[video-hf] beside the OS FFmpeg)')
    expected = templates(parent).encode(_row(clip))
    encoded = templates(parent + '_geo').encode(_row(clip))
    contract.assert_same_encode(expected, encoded)
    recorder().flush()
    (line,) = [json.loads(x) for x in (log_dir / runlog.GEOMETRY_FILE).read_text().splitlines()]
    out, metadata = _processor_view(templates(parent), clip, how)
    assert line['kind'] == 'video' and line['mismatch'] is None and line['basis'] == 'encode'
    assert line['frame_indices'] == [int(i) for i in metadata.frames_indices]
    fps = metadata.fps or 10.0  # InternVL's processor, handed decoded frames alone, keeps no rate: the file's
    assert line['frame_times'] == pytest.approx([int(i) / fps for i in metadata.frames_indices])
    tokenizer = templates(parent).tokenizer
    assert line['num_tokens'] == encoded['input_ids'].count(tokenizer.convert_tokens_to_ids(token))
    assert line['grid'][0] * line['tokens_per_step'] == line['num_tokens']
    text = tokenizer.decode(encoded['input_ids'])
    assert line['timestamps'] == (re.findall(stamp, text) if stamp else [])
    if 'video_grid_thw' in out:  # GLM: frames pair up
        t, h, w = out['video_grid_thw'][0].tolist()
        assert line['grid'] == [t, h, w] and line['resized_width'] == w * 14 and line['frames_per_step'] == 2
    elif 'target_sizes_videos' in out:  # MiniCPM-V: each frame's size in patches
        h, w = out['target_sizes_videos'][0].tolist()
        assert (line['resized_height'], line['resized_width']) == (h * 14, w * 14)
    elif 'video_position_ids' in out:  # Gemma 4: patch positions, -1 padding
        positions = out['video_position_ids'][0]
        assert line['resized_width'] == (int(positions[:, 0].max()) + 1) * 16
        assert line['resized_height'] == (int(positions[:, 1].max()) + 1) * 16
    else:  # InternVL: one 448 x 448 tile a frame
        assert tuple(out['pixel_values_videos'].shape[-2:]) == (line['resized_height'], line['resized_width'])
        assert out['pixel_values_videos'].shape[1] == line['grid'][0]


@pytest.mark.parametrize('parent', list(SAMPLED))
def test_engine_mode_encodes_are_not_recorded_as_video(templates, clip, log_dir, parent):
    # In vLLM mode the engine's own processor samples and resizes: no line says what it did.
    from swift.template import get_template
    tpl = get_template(templates(parent).processor, template_type=parent + '_geo')
    tpl.set_mode('vllm')
    try:
        tpl.encode({'messages': [{'role': 'user', 'content': '<video>When?'}], 'videos': [clip]})
    except Exception:  # a template that does not take a video in vLLM mode: nothing to record either
        pass
    recorder().flush()
    path = log_dir / runlog.GEOMETRY_FILE
    assert not path.exists() or all(json.loads(x).get('error') for x in path.read_text().splitlines())


@pytest.mark.parametrize('parent', REFUSED)
def test_templates_that_refuse_a_video(templates, clip, log_dir, parent):
    with pytest.raises(AssertionError):
        templates(parent).encode(_row(clip))
    with pytest.raises(AssertionError):
        templates(parent + '_geo').encode(_row(clip))
    recorder().flush()
    assert not (log_dir / runlog.GEOMETRY_FILE).exists()  # not a video swift-ext could name: no line
    assert [r['video'] for r in describe(parent + '_geo')] == ['refused']


@pytest.mark.parametrize('parent', IGNORED)
def test_templates_that_keep_the_tag_as_text(templates, clip, parent):
    encoded = templates(parent + '_geo').encode(_row(clip))
    assert '<video>' in templates(parent).tokenizer.decode(encoded['input_ids'])
    assert not any('video' in k for k in encoded)
    assert [r['video'] for r in describe(parent + '_geo')] == ['ignored']
