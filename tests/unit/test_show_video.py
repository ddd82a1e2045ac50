"""`swift-ext show VIDEO`: the facts are the header prediction, the contact sheet holds the sampled
frames (read back from the drawn pixels: each generated frame carries its index) with their times, and
bad videos or templates without video geometry end with exit 2 naming them, never a traceback."""
import json

import pytest
from PIL import Image

from swift_ext.cli import show
from swift_ext.cli.show.picture import LINE_HEIGHT, MARGIN
from swift_ext.cli.show.video import BAR, CELL_SIDE, COLUMNS
from swift_ext.testing.videos import frame_index, make_video
from swift_ext.video_io import predict_from_source, video_backend

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=120, fps=30, width=192, height=144)


def _run(capsys, *argv):
    capsys.readouterr()
    code = show.main(list(argv))
    out = capsys.readouterr()
    assert 'Traceback' not in out.out + out.err
    return code, out


def _cells(picture, count, lines, cell):
    """The drawn frames, cut from the sheet where contact_sheet puts them."""
    top = 2 * MARGIN + lines * LINE_HEIGHT
    columns = min(COLUMNS, count)
    for k in range(count):
        x = MARGIN + (k % columns) * (cell[0] + MARGIN)
        y = top + (k // columns) * (cell[1] + BAR + LINE_HEIGHT + MARGIN)
        yield picture.crop((x, y, x + cell[0], y + cell[1]))


@pytest.mark.parametrize('template,version,argv,row_kwargs', [
    ('qwen2_5_vl_geo', 'v2_5', [], None),
    ('qwen3_vl_geo', 'v3', ['--video_start', '1.0', '--video_end', '3.5'], {'video_start': 1.0, 'video_end': 3.5}),
    ('qwen2_5_vl_geo', 'v2_5', ['--fps', '4'], {'fps': 4.0}),
])
def test_the_sheet_holds_the_sampled_frames(video, tmp_path, capsys, template, version, argv, row_kwargs):
    out = tmp_path / 'sheet.png'
    code, text = _run(capsys, video, '--template', template, '--out', str(out), *argv)
    geo = predict_from_source(video, version=version, row_kwargs=row_kwargs)
    assert code == 0 and f'wrote {out}' in text.out
    assert f'frames sampled: {geo.num_frames} at {geo.sample_fps:.4g} fps: ' in text.out
    assert f'{geo.resized_width} x {geo.resized_height} per frame' in text.out
    assert f'video tokens:   {geo.num_tokens} ' in text.out
    lines = sum(1 for line in text.out.splitlines() if ': ' in line)
    picture = Image.open(out).convert('RGB')
    scale = min(1.0, CELL_SIDE / max(geo.resized_width, geo.resized_height))  # the resized frame, fit to a cell
    cell = (round(geo.resized_width * scale), round(geo.resized_height * scale))
    cells = list(_cells(picture, geo.num_frames, lines, cell))
    assert [frame_index(c) for c in cells] == list(geo.frame_indices)


def test_frames_drawn_are_capped_and_json_is_the_geometry(video, tmp_path, capsys):
    code, text = _run(capsys, video, '--template', 'qwen2_5_vl_geo', '--fps', '8', '--frames', '5',
                      '--out', str(tmp_path / 's.png'))
    assert code == 0 and 'drawn:' in text.out and '5 of the 32 frames sampled' in text.out
    code, text = _run(capsys, video, '--template', 'qwen3_vl_geo', '--json', '--mode', 'vllm',
                      '--video_start', '1')
    geo = predict_from_source(video, version='v3', mode='vllm', row_kwargs={'video_start': 1.0})
    assert code == 0 and json.loads(text.out) == json.loads(json.dumps(geo.to_dict()))
    assert geo.timestamp_origin == 1.0


@pytest.mark.parametrize('content,argv,message', [
    (b'not a video', [], 'not a readable video'),
    (None, [], 'video file does not exist'),
    ('ok', ['--template', 'internvl2_5_geo'], 'has no video geometry'),
    ('ok', ['--video_start', '9', '--video_end', '10'], 'holds no two frames'),
    ('ok', ['--fps', '2', '--nframes', '4'], 'give both `fps` and `nframes`'),
    ('ok', ['--frames', '0'], '--frames must be a positive integer'),
])
def test_bad_videos_are_named(video, tmp_path, capsys, content, argv, message):
    path = tmp_path / 'v.mp4'
    if content == 'ok':
        path = video
    elif content is not None:
        path.write_bytes(content)
    args = [str(path), '--out', str(tmp_path / 's.png')] + (argv if '--template' in argv else
                                                          ['--template', 'qwen2_5_vl_geo', *argv])
    code, out = _run(capsys, *args)
    assert code == 2 and message in out.err
    if content != 'ok' and '--frames' not in argv:
        assert str(path) in out.err
