"""swift_ext.images: one identity and one header read for every image form ms-swift's load_image accepts.

Every case is checked against ms-swift's own functions (``load_image``, ``_check_path``), not
against a re-statement of them.
"""
import base64
import hashlib
import io
import os
import threading

import pytest
from PIL import Image
from swift.template.vision_utils import _check_path, load_image

from swift_ext import geometry
from swift_ext.geometry import GeometryError
from swift_ext.images import (
    MAX_NAME_CHARS,
    classify,
    describe_source,
    image_key,
    payload_size,
    read_image_header,
    read_image_size,
)


def _png(size=(123, 45), color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, color).save(buf, format='PNG')
    return buf.getvalue()


def _noisy_png(side: int) -> bytes:
    # Random pixels do not compress: a realistic payload of a few hundred KB.
    buf = io.BytesIO()
    Image.frombytes('RGB', (side, side), os.urandom(side * side * 3)).save(buf, format='PNG')
    return buf.getvalue()


@pytest.fixture()
def files(tmp_path, monkeypatch):
    """A cwd with a.png (123x45), a ROOT_IMAGE_DIR with a.png (77x33) and b.png (31x17)."""
    cwd, root = tmp_path / 'cwd', tmp_path / 'root'
    cwd.mkdir()
    root.mkdir()
    (cwd / 'a.png').write_bytes(_png((123, 45)))
    (root / 'a.png').write_bytes(_png((77, 33)))
    (root / 'b.png').write_bytes(_png((31, 17)))
    monkeypatch.chdir(cwd)
    monkeypatch.setenv('ROOT_IMAGE_DIR', str(root))
    return cwd, root


# name -> source builder (cwd / root from the fixture): every form ms-swift's load_image accepts.
FORMS = {
    'absolute path': lambda cwd, root: str(root / 'b.png'),
    'relative path in cwd (wins over ROOT_IMAGE_DIR)': lambda cwd, root: 'a.png',
    'relative path only in ROOT_IMAGE_DIR': lambda cwd, root: 'b.png',
    'path with spaces around (load_file strips)': lambda cwd, root: '  a.png \n',
    'dict with path': lambda cwd, root: {'bytes': None, 'path': 'b.png'},
    'dict with bytes (bytes win over path)': lambda cwd, root: {'bytes': _png((9, 8)), 'path': 'a.png'},
    'dict with base64 in path (as rewards get it)': lambda cwd, root: {'bytes': None,
                                                                       'path': base64.b64encode(_png((9, 8))).decode()},
    'dict with a base64 string in bytes': lambda cwd, root: {'bytes': base64.b64encode(_png((9, 8))).decode()},
    'raw bytes': lambda cwd, root: _png((9, 8)),
    'short raw base64': lambda cwd, root: base64.b64encode(_png((9, 8))).decode(),
    'long raw base64': lambda cwd, root: base64.b64encode(_noisy_png(256)).decode(),
    'data URL': lambda cwd, root: 'data:image/png;base64,' + base64.b64encode(_png((9, 8))).decode(),
    'PIL image': lambda cwd, root: Image.new('RGB', (12, 13)),
}


def _ms_swift_loads(source):
    # Template._load_image: a dict's bytes, else its path; then load_image.
    if isinstance(source, dict):
        source = source.get('bytes') or source.get('path')
    return load_image(source)


@pytest.mark.parametrize('form', list(FORMS))
def test_every_form_reads_like_ms_swift(files, form):
    source = FORMS[form](*files)
    assert read_image_size(source) == _ms_swift_loads(source).size


@pytest.mark.parametrize('form', [f for f in FORMS if 'path' in f and 'base64' not in f and 'bytes win' not in f])
def test_paths_resolve_like_check_path(files, form):
    source = FORMS[form](*files)
    raw = source['path'] if isinstance(source, dict) else source
    info = classify(source)
    assert info.kind == 'path'
    assert info.path == _check_path(raw.strip())  # ms-swift's own resolution, in its order
    assert image_key(source) == info.path and os.path.isabs(info.key)


def test_payload_key_is_the_sha1_of_the_decoded_bytes_whatever_the_form(files):
    data = _png((9, 8))
    text = base64.b64encode(data).decode()
    digest = 'sha1:' + hashlib.sha1(data).hexdigest()
    forms = [data, bytearray(data), text, 'data:image/png;base64,' + text, {'bytes': data, 'path': None},
             {'bytes': None, 'path': text}, {'bytes': text}]
    assert {image_key(f) for f in forms} == {digest}
    assert payload_size(digest) == len(data)


def test_long_base64_is_named_short_never_by_its_payload(files):
    text = base64.b64encode(_noisy_png(400)).decode()  # ~640 KB of base64
    assert len(text) > 500_000
    info = classify({'bytes': None, 'path': text})
    assert info.kind == 'base64' and info.key.startswith('sha1:') and len(info.key) == 45
    assert len(info.name) < 60 and 'bytes' in info.name
    assert describe_source(text) == info.name


def test_short_base64_is_not_a_fake_path(files):
    text = base64.b64encode(_png((2, 2))).decode()
    assert len(text) < 2000
    assert image_key(text).startswith('sha1:')  # not /cwd/iVBORw0K...


@pytest.mark.parametrize('url', ['http://example.com/a.png', 'https://example.com/b.jpg?x=1'])
def test_urls_are_named_not_fetched(url):
    info = classify(url)
    assert (info.kind, info.key) == ('url', url)
    with pytest.raises(GeometryError, match='remote image'):
        read_image_size(url)


# name -> (source, message): sources ms-swift refuses; each a GeometryError naming the rule, never another error.
HOSTILE = {
    'bytes is an int': ({'bytes': 5}, 'an image must be'),
    'malformed data URL': ('data:image/png;base64' + 'A' * 10, 'data URL must look like'),
    # b64decode (non-validating, as ms-swift calls it) drops what is not base64: nothing is left.
    'data URL with bad base64': ('data:image/png;base64,@@@=', 'image data is empty'),
    'empty dict': ({'bytes': None, 'path': None}, 'needs a `path` or `bytes`'),
    'empty string': ('   ', 'empty string'),
    'nested dict': ({'bytes': {'bytes': b'x'}}, 'must not be a dict'),
    'a list': ([1, 2], 'an image must be'),
    'None': (None, 'an image must be'),
    'object': (object(), 'an image must be'),
    'long string that is not base64': ('@' * 5000, 'image data is empty'),
    'long string with base64 padding errors': ('abc' * 1001, 'not valid base64'),
    'base64 of not an image': (base64.b64encode(b'hello world, not an image').decode(),
                               'does not exist, and the text is not base64 of an image'),
    'long base64 of not an image': (base64.b64encode(os.urandom(3000)).decode(), 'not a readable image'),
    'missing file': ('nope/missing.png', 'does not exist'),
}


@pytest.mark.parametrize('case', list(HOSTILE))
def test_hostile_sources_raise_geometry_error(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    source, match = HOSTILE[case]
    info = classify(source)  # never raises
    assert len(info.name) <= MAX_NAME_CHARS + 40
    with pytest.raises(GeometryError, match=match):
        read_image_size(source)


def test_special_files_refused_by_type_without_blocking(tmp_path):
    fifo = tmp_path / 'fifo.png'
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            read_image_size(str(fifo))
        except GeometryError as exc:
            result['error'] = str(exc)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(30)  # a bound for a hang, not a timing assertion: open() on a FIFO blocks forever
    assert 'not a regular file (a FIFO)' in result.get('error', 'it blocked')
    for path, what in ((str(tmp_path), 'a directory'), ('/dev/zero', 'a character device')):
        with pytest.raises(GeometryError, match=f'not a regular file \\({what}\\)'):
            read_image_size(path)


@pytest.mark.parametrize('fmt,cut', [('PNG', 0.5), ('PNG', 0.9), ('JPEG', 0.5), ('JPEG', 0.8), ('WEBP', 0.6),
                                     ('GIF', 0.5), ('BMP', 0.5)])
def test_verify_finds_truncated_files_and_never_crashes(tmp_path, fmt, cut):
    buf = io.BytesIO()
    Image.frombytes('RGB', (200, 150), os.urandom(200 * 150 * 3)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f'cut.{fmt.lower()}'
    path.write_bytes(data[:int(len(data) * cut)])
    try:
        read_image_size(str(path))  # the header alone reads fine for most formats (not WEBP)
    except GeometryError:
        pass
    with pytest.raises(GeometryError, match='not a readable image'):
        read_image_size(str(path), verify=True)
    (tmp_path / 'whole').write_bytes(data)
    assert read_image_size(str(tmp_path / 'whole'), verify=True) == (200, 150)


def test_garbage_after_a_png_header_never_crashes_pil(tmp_path):
    # Chunk lengths that lie, CRCs that fail, random bytes: always a GeometryError.
    header = _png((20, 20))[:33]
    for seed in range(30):
        path = tmp_path / f'g{seed}.png'
        path.write_bytes(header + os.urandom(seed * 7 + 1) + b'IDAT' + os.urandom(seed))
        try:
            read_image_size(str(path), verify=True)
        except GeometryError:
            pass


def test_exif_orientation_is_read(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (200, 100)).save(tmp_path / 'rot.jpg', exif=exif.tobytes())
    Image.new('RGB', (200, 100)).save(tmp_path / 'plain.jpg')
    assert read_image_header(str(tmp_path / 'rot.jpg')).orientation == 6
    assert read_image_header(str(tmp_path / 'plain.jpg')).orientation == 1


def test_no_compatibility_shim_in_the_geometry_core():
    # Image I/O has one home (swift_ext.images): the core no longer forwards names to it.
    assert not hasattr(geometry, '__getattr__')
    for name in ('describe_source', 'read_image_size'):
        with pytest.raises(AttributeError):
            getattr(geometry, name)
