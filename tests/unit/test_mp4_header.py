"""The MP4 / MOV ``moov`` reader (``swift_ext.mp4_header``) gives the header PyAV gives, for both readers'
conventions, on generated files of many rates, lengths, sizes and encoders; it declines (None, then
PyAV reads the file) what it does not vouch for, and a hostile box never raises."""
import io
import random
import struct

import pytest

from swift_ext.mp4_header import read_mp4_track
from swift_ext.testing.videos import make_video
from swift_ext.video_io import read_video_header

RATES = [10, 15, 24, '24000/1001', 25, '30000/1001', 30, 50, '60000/1001', 60]


def _cases():
    rng = random.Random(7)
    cases = []
    for i, rate in enumerate(RATES * 2):
        suffix = '.mov' if i % 3 == 0 else '.mp4'
        cases.append((suffix, rng.randint(2, 140), rate, 2 * rng.randint(8, 120), 2 * rng.randint(6, 90), None))
    cases += [('.mp4', 37, 30, 96, 72, 'mpeg4'), ('.mp4', 1, 25, 64, 48, None), ('.mp4', 3, 30, 64, 48, None),
              ('.mp4', 45, '30000/1001', 128, 96, 'libx265'), ('.mov', 20, 24, 96, 64, 'libx265')]
    return cases


CASES = _cases()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('mp4')
    return [make_video(str(root / f'{i}{suffix}'), num_frames=n, fps=rate, width=w, height=h, codec=codec)
            for i, (suffix, n, rate, w, h, codec) in enumerate(CASES)]


@pytest.mark.parametrize('backend', ['decord', 'torchcodec'])
def test_the_header_is_pyav_s(files, backend):
    parsed = 0
    for path, case in zip(files, CASES, strict=True):
        fast = read_video_header(path, backend=backend)
        slow = read_video_header(path, backend=backend, parse_mp4=False)
        assert fast == slow, (case, fast, slow)
        # and both are the file's truth (MPEG-4 Part 2 tells its size only in a decoded frame: PyAV's
        # probe is run again in full for it)
        assert (slow.width, slow.height, slow.total_frames) == (case[3], case[4], case[1])
        with open(path, 'rb') as f:
            parsed += read_mp4_track(f) is not None
    # every H.264 and HEVC file is read by the moov reader (the test is not PyAV against itself); MPEG-4 Part 2
    # is not
    assert parsed == sum(case[5] in (None, 'libx265') for case in CASES)


def test_bytes_and_dicts_take_the_same_path(files):
    data = open(files[1], 'rb').read()
    assert read_video_header(data, backend='decord') == read_video_header(data, backend='decord', parse_mp4=False)
    assert read_video_header({'bytes': data, 'path': None}, backend='decord').total_frames == CASES[1][1]


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I4s', 8 + len(body), kind) + body


@pytest.mark.parametrize('data', [
    b'', b'\x00\x00\x00\x08ftyp', _box(b'ftyp', b'isom') + _box(b'moov', b''),
    _box(b'moov', _box(b'trak', _box(b'mdia', b'\x00' * 3))),  # truncated boxes
    _box(b'moov', _box(b'mvex', b'')),  # fragmented
    struct.pack('>I4s', 1, b'moov') + struct.pack('>Q', 2 ** 62),  # a 64-bit size past the file
    struct.pack('>I4s', 4, b'free'),  # a size smaller than its header
])
def test_hostile_boxes_are_declined(data):
    assert read_mp4_track(io.BytesIO(data)) is None


def test_declined_files_still_read_through_pyav(files, tmp_path):
    # a fragment of the moov removed: the reader declines and PyAV names the file
    data = bytearray(open(files[0], 'rb').read())
    at = data.find(b'stts')
    data[at:at + 4] = b'xxxx'
    path = tmp_path / 'no_stts.mp4'
    path.write_bytes(bytes(data))
    with open(path, 'rb') as f:
        assert read_mp4_track(f) is None
    try:
        header = read_video_header(str(path), backend='decord')
    except ValueError as exc:  # VideoError: FFmpeg refuses the damaged table
        assert str(path) in str(exc)
    else:
        assert header.width == CASES[0][3]
