"""Real generated video files: header reads against decord / torchcodec, the frames qwen-vl-utils really
samples (read back from the pixels) against the prediction, image-list videos, and hostile files."""
import base64
import os
import stat
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swift_ext.geometry import VideoError
from swift_ext.testing.videos import frame_index, make_frame_images, make_video, sampled_indices
from swift_ext.video import VideoSettings, predict_video_geometry
from swift_ext.video_io import benchmark_header_vs_decode, predict_from_source, read_video_header

torch = pytest.importorskip('torch')
vp = pytest.importorskip('qwen_vl_utils.vision_process')

# name -> (suffix, frames, fps, width, height)
VIDEOS = {
    'mp4_30': ('.mp4', 150, 30, 96, 72),
    'mp4_2997': ('.mp4', 100, 29.97, 96, 72),
    'mp4_23976': ('.mp4', 73, '24000/1001', 80, 64),
    'webm_25': ('.webm', 61, 25, 96, 72),
    'avi_24': ('.avi', 48, 24, 64, 48),
    'mkv_10': ('.mkv', 37, 10, 96, 72),
    'mov_60': ('.mov', 241, 60, 96, 64),
}


def _backends():
    found = []
    for name in ('decord', 'torchcodec'):
        try:
            reader = getattr(vp, f'_read_video_{name}')
            reader({'video': _tiny_probe()})
            found.append(name)
        except Exception:  # not installed, or its FFmpeg libraries are missing
            continue
    return found


_PROBE = {}


def _tiny_probe():
    if 'path' not in _PROBE:
        import tempfile
        _PROBE['path'] = make_video(os.path.join(tempfile.mkdtemp(), 'probe.mp4'), num_frames=8, fps=8)
    return _PROBE['path']


BACKENDS = _backends()
needs_backend = pytest.mark.skipif(not BACKENDS, reason='no video reader (install swift-ext[video]: decord)')


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('videos')
    return {name: make_video(str(root / (name + suffix)), num_frames=n, fps=fps, width=w, height=h)
            for name, (suffix, n, fps, w, h) in VIDEOS.items()}


def test_generated_frames_carry_their_index(videos):
    import av
    with av.open(videos['webm_25']) as container:
        decoded = [frame_index(f.to_ndarray(format='rgb24')) for f in container.decode(video=0)]
    assert decoded == list(range(61))


@needs_backend
@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('name', list(VIDEOS))
def test_header_equals_the_reader(videos, name, backend):
    path = videos[name]
    if backend == 'decord':
        import decord
        reader = decord.VideoReader(path)
        expected = (len(reader), reader.get_avg_fps(), reader[0].shape[1], reader[0].shape[0])
    else:
        from torchcodec.decoders import VideoDecoder
        meta = VideoDecoder(path).metadata
        expected = (meta.num_frames, meta.average_fps, meta.width, meta.height)
    for scan in (False, True):
        header = read_video_header(path, backend=backend, scan=scan)
        assert (header.total_frames, header.video_fps, header.width, header.height) == expected, scan


def _fetch(backend, ele, patch_size):
    """fetch_video with ``backend`` as its reader, and the frames the reader itself returned."""
    seen = {}
    real = getattr(vp, f'_read_video_{backend}')

    def reader(e):
        seen['out'] = real(e)
        return seen['out']

    with mock.patch.dict(vp.VIDEO_READER_BACKENDS, {vp.get_video_reader_backend(): reader}):
        video, sample_fps = vp.fetch_video(dict(ele), image_patch_size=patch_size, return_video_sample_fps=True)
    return video, sample_fps, seen['out']


@st.composite
def rows(draw, duration):
    row = {}
    if draw(st.booleans()):
        row['video_start'] = draw(st.floats(0, duration * 0.6))
        row['video_end'] = draw(st.floats(duration * 0.4, duration + 1))
    kind = draw(st.sampled_from(['fps', 'nframes', 'none']))
    if kind == 'fps':
        row['fps'] = draw(st.floats(0.5, 12))
    elif kind == 'nframes':
        row['nframes'] = draw(st.integers(2, 16))
    return row


@needs_backend
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(list(VIDEOS)), backend=st.sampled_from(BACKENDS or ['decord']),
       version=st.sampled_from(['v2_5', 'v3']), data=st.data(),
       s=st.builds(VideoSettings, fps=st.floats(0.5, 6), fps_min_frames=st.integers(2, 8),
                   fps_max_frames=st.integers(4, 40), video_max_token_num=st.integers(64, 400)))
def test_sampled_frames_are_the_predicted_ones(videos, name, backend, version, data, s):
    # The indices printed on the frames fetch_video returned are the predicted frame_indices.
    path = videos[name]
    patch = 16 if version == 'v3' else 14
    s = VideoSettings(**{**s.__dict__, 'patch_size': patch})
    header = read_video_header(path, backend=backend)
    row = data.draw(rows(header.duration))
    try:
        geo = predict_video_geometry(width=header.width, height=header.height, total_frames=header.total_frames,
                                     video_fps=header.video_fps, version=version, settings=s, row_kwargs=row)
    except VideoError:
        geo = None
    with mock.patch.multiple(vp, FPS=s.fps, FPS_MIN_FRAMES=s.fps_min_frames, FPS_MAX_FRAMES=s.fps_max_frames,
                             VIDEO_MAX_TOKEN_NUM=s.video_max_token_num):
        try:
            video, sample_fps, (raw, meta, _) = _fetch(backend, {'video': path, **row}, patch)
        except (ValueError, AssertionError, AttributeError, RuntimeError):
            # qwen-vl-utils refuses (its torchvision fallback fails on torchvision >= 0.22 too)
            assert geo is None
            return
    assert geo is not None
    assert list(meta['frames_indices']) == list(geo.frame_indices)
    assert sampled_indices(raw) == list(geo.frame_indices)  # read from the decoded pixels
    assert tuple(video.shape) == (geo.num_frames, 3, geo.resized_height, geo.resized_width)
    assert sample_fps == geo.sample_fps


@needs_backend
@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('name', list(VIDEOS))
def test_default_settings_sample_the_predicted_frames(videos, name, backend):
    # Every file at qwen-vl-utils' defaults: the printed indices, the size and the rate as predicted.
    s = VideoSettings()
    geo = predict_from_source(videos[name], settings=s, backend=backend)
    with mock.patch.multiple(vp, FPS=s.fps, FPS_MIN_FRAMES=s.fps_min_frames, FPS_MAX_FRAMES=s.fps_max_frames,
                             VIDEO_MAX_TOKEN_NUM=s.video_max_token_num, VIDEO_MIN_TOKEN_NUM=s.video_min_token_num):
        video, sample_fps, (raw, meta, _) = _fetch(backend, {'video': videos[name]}, 14)
    assert sampled_indices(raw) == list(geo.frame_indices) == list(meta['frames_indices'])
    assert tuple(video.shape) == (geo.num_frames, 3, geo.resized_height, geo.resized_width)
    assert sample_fps == geo.sample_fps


@pytest.mark.parametrize('count', [5, 6])
def test_image_list_video(tmp_path, count):
    frames = make_frame_images(str(tmp_path), num_frames=count, width=96, height=72)
    s = VideoSettings(patch_size=16)
    geo = predict_from_source(frames, version='v3', settings=s)
    with mock.patch.object(vp, 'FPS', s.fps):
        video, sample_fps = vp.fetch_video({'video': frames, 'sample_fps': vp.FPS}, image_patch_size=16,
                                           return_video_sample_fps=True)
    assert tuple(video.shape) == (geo.num_frames, 3, geo.resized_height, geo.resized_width)
    assert sample_fps == geo.sample_fps and geo.padded_frames == count % 2
    assert sampled_indices(video) == list(range(count)) + [count - 1] * (count % 2)


@needs_backend
def test_base64_and_bytes_sources(videos):
    path = videos['mp4_30']
    with open(path, 'rb') as f:
        data = f.read()
    text = base64.b64encode(data).decode()
    for source in (data, text, 'data:video/mp4;base64,' + text, {'bytes': data, 'path': None}):
        assert read_video_header(source, backend='decord').total_frames == 150


@needs_backend
def test_a_name_is_never_an_ffmpeg_protocol(videos, tmp_path, monkeypatch):
    # A file called 'concat:...' is read as that file, not as FFmpeg's concat protocol.
    monkeypatch.chdir(tmp_path)
    name = 'concat:' + os.path.basename(videos['avi_24']) + '|x.avi'
    with open(videos['avi_24'], 'rb') as src, open(name, 'wb') as dst:
        dst.write(src.read())
    assert read_video_header(name, backend='decord').total_frames == 48


def _truncated(videos, tmp_path, faststart):
    import av
    import numpy as np
    path = str(tmp_path / f'cut_{faststart}.mp4')
    with av.open(path, 'w', options={'movflags': 'faststart'} if faststart else {}) as c:
        stream = c.add_stream('libx264', rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, 'yuv420p'
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8),
                                               format='rgb24')
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)
    return path


def _write(path, data):
    with open(path, 'wb') as f:
        f.write(data)
    return str(path)


def _y4m(path, header):
    return _write(path, b'YUV4MPEG2 ' + header + b' Ip A1:1 C420jpeg\nFRAME\n' + b'\x00' * 64)


# name -> (maker(tmp_path, videos) -> source, message pattern)
HOSTILE = {
    'missing file': (lambda t, v: str(t / 'nope.mp4'), 'does not exist'),
    'empty file': (lambda t, v: _write(t / 'empty.mp4', b''), r'empty \(0 bytes\)'),
    'empty bytes': (lambda t, v: b'', r'empty \(0 bytes\)'),
    'a directory': (lambda t, v: str(t), 'not a regular file .a directory'),
    'a FIFO': (lambda t, v: (os.mkfifo(t / 'fifo.mp4'), str(t / 'fifo.mp4'))[1], 'not a regular file .a FIFO'),
    'a character device': (lambda t, v: (os.mknod(t / 'null.mp4', 0o600 | stat.S_IFCHR, os.makedev(1, 3)),
                                         str(t / 'null.mp4'))[1], 'a character device'),
    'text': (lambda t, v: _write(t / 'notes.mp4', b'hello, this is not a video\n' * 20), 'not a readable video'),
    'a PNG picture': (lambda t, v: _write(t / 'pic.mp4', _png()), 'not a readable video'),
    'cut short, index at the end': (lambda t, v: _truncated(v, t, False), 'not a readable video'),
    'huge frames': (lambda t, v: _y4m(t / 'huge.y4m', b'W20000 H10000 F30:1'), 'decompression-bomb limit'),
    'huge frame rate': (lambda t, v: _y4m(t / 'fast.y4m', b'W64 H48 F1000000:1'), 'frame rate must be in'),
    'a remote video': (lambda t, v: 'https://example.com/v.mp4', 'remote video'),
    'an int': (lambda t, v: 5, 'a video must be a path'),
    'a picture object': (lambda t, v: __import__('PIL.Image').Image.new('RGB', (4, 4)), 'a video must be a path'),
}


def _png():
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new('RGB', (64, 48)).save(buf, format='PNG')
    return buf.getvalue()


@pytest.mark.parametrize('case', list(HOSTILE))
def test_hostile_files_are_named_errors(tmp_path, videos, case):
    make, match = HOSTILE[case]
    source = make(tmp_path, videos)
    with pytest.raises(VideoError, match=match):
        read_video_header(source, backend='decord')


def test_cut_short_after_the_header_is_caught_by_a_scan(tmp_path, videos):
    # With the index up front the header still promises 90 frames; only the packet scan sees the cut.
    path = _truncated(videos, tmp_path, True)
    assert read_video_header(path, backend='decord').total_frames == 90
    with pytest.raises(VideoError, match='promises 90 frames but the file holds'):
        read_video_header(path, backend='decord', scan=True)


@needs_backend
def test_benchmark_function_reports_both_paths(videos):
    # Not a timing test: the benchmark runs both paths and they agree on frames and size.
    result = benchmark_header_vs_decode(videos['mp4_30'], repeats=2)
    assert result['agree'] and result['header_s'] > 0 and result['decode_s'] > 0
