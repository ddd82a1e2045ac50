"""read_image_size: header-only sizes for every source ms-swift can hand over, clear errors otherwise."""
import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from swift_ext.geometry import GeometryError
from swift_ext.images import read_image_size


def _encode(fmt, size=(123, 45), **save):
    buf = io.BytesIO()
    Image.new('RGB', size, (200, 10, 10)).save(buf, format=fmt, **save)
    return buf.getvalue()


def _png_header_only(width, height):
    # A PNG whose IHDR claims width x height, with no pixel data at all.
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack('>I', len(ihdr)) + b'IHDR' + ihdr + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr))
    idat = struct.pack('>I', 16) + b'IDAT' + b'\0' * 8  # PIL stops reading at IDAT
    return b'\x89PNG\r\n\x1a\n' + chunk + idat


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG', 'WEBP', 'GIF', 'BMP'])
def test_formats_from_path_bytes_and_dict(tmp_path, fmt):
    data = _encode(fmt)
    path = tmp_path / f'img.{fmt.lower()}'
    path.write_bytes(data)
    assert read_image_size(str(path)) == (123, 45)
    assert read_image_size(path) == (123, 45)                       # os.PathLike
    assert read_image_size(data) == (123, 45)                       # raw bytes
    assert read_image_size({'bytes': data, 'path': None}) == (123, 45)  # as rewards get it
    assert read_image_size({'bytes': None, 'path': str(path)}) == (123, 45)


def test_pil_image_and_data_url():
    assert read_image_size(Image.new('RGB', (7, 9))) == (7, 9)
    url = 'data:image/png;base64,' + base64.b64encode(_encode('PNG', (31, 17))).decode()
    assert read_image_size(url) == (31, 17)


def test_header_only_no_decode():
    # A header claiming 4000x3000 with no pixel data still gives its size: nothing is decoded.
    assert read_image_size(_png_header_only(4000, 3000)) == (4000, 3000)


def test_exif_rotation_reports_stored_size(tmp_path):
    # A JPEG stored 200x100 with EXIF orientation 6 (rotate 90) displays as 100x200. We report
    # the stored 200x100, because ms-swift's load_image and qwen-vl-utils resize the stored
    # pixels without applying EXIF, so that is the frame the model sees.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'rot.jpg'
    Image.new('RGB', (200, 100)).save(path, exif=exif.tobytes())
    assert read_image_size(str(path)) == (200, 100)
    from swift.template.vision_utils import load_image
    assert load_image(str(path)).size == (200, 100)


def test_truncated_after_header(tmp_path):
    # Cut after the header: the size is readable; verify=True (checksums, no decode) refuses it.
    data = _encode('PNG', (300, 300))
    path = tmp_path / 'cut.png'
    path.write_bytes(data[: len(data) // 2])
    assert read_image_size(str(path)) == (300, 300)
    with pytest.raises(GeometryError, match='cut.png: not a readable image'):
        read_image_size(str(path), verify=True)


def _write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize('make,match', [
    (lambda p: str(p / 'missing.png'), 'missing.png: image file does not exist'),
    (lambda p: _write(p / 'empty.png', b''), 'empty.png: image file is empty'),
    (lambda p: _write(p / 'junk.png', b'not an image at all'),
     'junk.png: not a readable image'),
    (lambda p: _write(p / 'head.png', _encode('PNG')[:20]),
     'head.png: not a readable image'),   # truncated inside the header
    (lambda p: _png_header_only(40000, 40000), 'more than the decompression-bomb limit'),
    (lambda p: b'', 'image data is empty'),
    (lambda p: {'path': None, 'bytes': None}, 'needs a `path` or `bytes`'),
    (lambda p: 12345, 'an image must be a path, bytes, base64 string, data URL, .* got int'),
])
def test_bad_inputs(tmp_path, make, match):
    with pytest.raises(GeometryError, match=match):
        read_image_size(make(tmp_path))


def test_error_is_a_value_error(tmp_path):
    # Callers that already catch ValueError (ms-swift's dataset loop) keep working.
    with pytest.raises(ValueError):
        read_image_size(str(tmp_path / 'nope.jpg'))
