"""One identity for an image source, the same in the template record, the rewards, the log and `plan`.

ms-swift accepts an image as a path (absolute or relative), a ``{'path', 'bytes'}`` dict, raw
bytes, a raw base64 string, a ``data:`` URL, an ``http(s)`` URL or a PIL image
(``swift/template/vision_utils.py``: ``load_file`` / ``_check_path``; ``Template._load_image``).
:func:`classify` tells which one a source is, the way ms-swift decides it, and names it:

- ``key``: the identity. A file's resolved absolute path; ``sha1:<hex>`` of the decoded
  payload for bytes, base64 and data URLs (so the same picture given as bytes or as base64
  has one key, and the key matches ``sha1sum`` of the file); the URL for a remote image.
- ``name``: a short form for messages: the path as written, or ``sha1:<12 hex> (N bytes)``.
  A payload is never stored or logged, only its hash and size.

Relative paths resolve as ``_check_path`` does: the working directory first, then
``ROOT_IMAGE_DIR``; a string longer than 2000 characters is base64 without looking at the
disk; a string ms-swift finds nowhere is base64 when ``base64.b64decode`` accepts it.
PIL is imported on first use only.

Internal module.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .forksafe import Lock
from .geometry import MAX_IMAGE_PIXELS, GeometryError

# ms-swift's `_check_path`: longer strings are base64 without a look at the disk.
MAX_PATH_HEURISTIC = 2000
# Characters of a path kept in a message; longer ones are cut in the middle.
MAX_NAME_CHARS = 160
# EXIF tag 0x0112: values other than 1 make a viewer rotate or mirror the stored pixels.
EXIF_ORIENTATION = 0x0112
ROOT_ENV = 'ROOT_IMAGE_DIR'
_DATA_URL = re.compile(r'data:(.+?);base64,', re.DOTALL)

KINDS = ('path', 'bytes', 'base64', 'data_url', 'url', 'pil', 'invalid')


@dataclass(frozen=True)
class ImageSource:
    """What a source is: ``kind`` (one of ``KINDS``), ``key`` (identity), ``name`` (short form).

    ``path`` is the file ms-swift opens (``None`` unless ``kind == 'path'``; it may not exist),
    ``payload_size`` the decoded byte count of in-memory sources, ``error`` why an ``'invalid'``
    source cannot be an image.
    """

    kind: str
    key: str
    name: str
    path: str | None = None
    payload_size: int | None = None
    error: str | None = None


# --- naming -------------------------------------------------------------------------------------
def short_text(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f'{text[:keep]}...[{len(text) - 2 * keep} chars]...{text[-keep:]}'


def _hash_name(digest: str, size: int, what: str) -> str:
    return f'sha1:{digest[:12]} ({size} bytes{", " + what if what else ""})'


# Payload sizes of recent sha1 keys, so a log record can carry the size next to the key.
_SIZES: OrderedDict[str, int] = OrderedDict()
_SIZES_LOCK = Lock()
_SIZES_MAX = 4096


def _remember_size(key: str, size: int) -> None:
    with _SIZES_LOCK:
        _SIZES[key] = size
        _SIZES.move_to_end(key)
        while len(_SIZES) > _SIZES_MAX:
            _SIZES.popitem(last=False)


def payload_size(key: str) -> int | None:
    """The decoded size in bytes behind a ``sha1:`` key seen recently in this process, else None."""
    with _SIZES_LOCK:
        return _SIZES.get(key)


def _payload(data: bytes, what: str) -> ImageSource:
    digest = hashlib.sha1(data).hexdigest()
    key = 'sha1:' + digest
    _remember_size(key, len(data))
    kind = {'base64': 'base64', 'data URL': 'data_url'}.get(what, 'bytes')
    return ImageSource(kind=kind, key=key, name=_hash_name(digest, len(data), what), payload_size=len(data))


def _invalid(name: str, error: str) -> ImageSource:
    return ImageSource(kind='invalid', key='invalid:' + hashlib.sha1(name.encode()).hexdigest()[:20],
                       name=name, error=error)


# --- resolution as ms-swift does it ---------------------------------------------------------------------
def resolve_path(path: str, env: Mapping[str, str] | None = None) -> str | None:
    """The absolute file ms-swift's ``_check_path`` picks for ``path``, or None where it finds none.

    Order: as given (relative to the working directory), then joined to ``ROOT_IMAGE_DIR``
    with ``~`` expanded.
    """
    env = os.environ if env is None else env
    if os.path.exists(path):
        return os.path.abspath(path)
    root = env.get(ROOT_ENV)
    joined = os.path.join(root, path) if root is not None else path
    joined = os.path.abspath(os.path.expanduser(joined))
    return joined if os.path.exists(joined) else None


def _decode_base64(text: str) -> bytes | None:
    """``base64.b64decode`` as ms-swift calls it (non-validating), or None where it refuses."""
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        return None


# Leading bytes of the formats PIL opens from a dataset. A short string that is no file but
# decodes as base64 is base64 for ms-swift too; it is named as the missing file it more likely
# is unless its bytes start like an image (both fail to load alike; only the message differs).
_MAGIC = (b'\x89PNG', b'\xff\xd8\xff', b'GIF87a', b'GIF89a', b'BM', b'II*\x00', b'MM\x00*', b'\x00\x00\x01\x00',
          b'\x00\x00\x00\x0cjP', b'\xff\x4f\xff\x51')


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b'RIFF' and data[8:12] == b'WEBP') or data[4:8] == b'ftyp'


def _classify_string(text: str, env: Mapping[str, str] | None) -> ImageSource:
    text = text.strip()  # load_file strips
    if not text:
        return _invalid('<empty string>', 'the image is an empty string')
    if text.startswith('http'):  # load_file fetches every string starting with 'http'
        return ImageSource(kind='url', key=text, name=short_text(text))
    if len(text) <= MAX_PATH_HEURISTIC:
        found = resolve_path(text, env)
        if found is not None:
            return ImageSource(kind='path', key=found, name=short_text(text), path=found)
    if text.startswith('data:'):
        match = _DATA_URL.match(text, 0, min(len(text), 300))
        if match is None:
            return _invalid(short_text(text, 60), 'a data URL must look like data:<type>;base64,<data>')
        data = _decode_base64(text[match.end():])
        if data is None:
            return _invalid(short_text(text, 60), 'the data URL holds invalid base64')
        return _payload(data, 'data URL')
    data = _decode_base64(text)
    if data is not None and (len(text) > MAX_PATH_HEURISTIC or _looks_like_image(data)):
        return _payload(data, 'base64')
    if len(text) > MAX_PATH_HEURISTIC:
        return _invalid(short_text(text, 60), f'a string longer than {MAX_PATH_HEURISTIC} characters is read '
                        'as base64 by ms-swift, and this one is not valid base64')
    # ms-swift opens the string as given: a missing file relative to the working directory.
    hint = None if data is None else 'image file does not exist, and the text is not base64 of an image either'
    return ImageSource(kind='path', key=os.path.abspath(text), name=short_text(text), path=text, error=hint)


def classify(source: Any, env: Mapping[str, str] | None = None) -> ImageSource:
    """What ``source`` is and its identity, as ms-swift would load it. Never raises.

    A dict's ``bytes`` win over its ``path`` when truthy (``Template._load_image``); a string in
    ``bytes`` is read like any string (path, base64 or data URL). ``env`` defaults to the process's.
    """
    try:
        return _classify(source, env)
    except Exception as exc:  # an identity must never stop a run: report the source instead
        return _invalid(f'<{type(source).__name__}>', f'cannot identify this image source ({exc!r})'[:300])


def _classify(source: Any, env: Mapping[str, str] | None) -> ImageSource:
    if isinstance(source, Mapping):
        data = source.get('bytes')
        if not data:
            data = source.get('path')
        if data is None or (isinstance(data, (str, bytes, bytearray)) and not data):
            return _invalid('<empty image dict>', f'an image dict needs a `path` or `bytes`, got keys '
                            f'{sorted(map(str, source))[:10]}')
        if isinstance(data, Mapping):
            return _invalid('<nested image dict>', "an image dict's `bytes` / `path` must not be a dict")
        return _classify(data, env)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _payload(bytes(source), '')
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
        if isinstance(source, bytes):
            source = os.fsdecode(source)
    if isinstance(source, str):
        return _classify_string(source, env)
    if hasattr(source, 'tobytes') and hasattr(source, 'size') and hasattr(source, 'mode'):  # PIL
        data = source.tobytes()
        header = f'{source.mode} {source.size[0]}x{source.size[1]}:'.encode()
        info = _payload(header + data, '')
        return ImageSource(kind='pil', key=info.key, payload_size=info.payload_size,
                           name=f'<PIL {source.mode} {source.size[0]}x{source.size[1]}>')
    return _invalid(f'<{type(source).__name__}>', f'an image must be a path, bytes, base64 string, '
                    f'data URL, {{"path", "bytes"}} dict or PIL image, got {type(source).__name__}')


def image_key(source: Any) -> str:
    """A stable identity for an image source, the same in the template, the rewards and the log."""
    return classify(source).key


def describe_source(source: Any) -> str:
    """A short human name for an image source: the path as written, or ``sha1:`` and the size."""
    return classify(source).name


# --- reading headers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageHeader:
    """``width`` x ``height`` as stored, the EXIF orientation (1 when none) and the source's identity."""

    width: int
    height: int
    orientation: int
    source: ImageSource


def read_image_size(source: Any, *, verify: bool = False) -> tuple[int, int]:
    """``(width, height)`` of an image from its header only (no pixel decode).

    ``source``: any form ms-swift accepts (see :func:`classify`). The size reported is the
    stored pixel size, as PIL's ``Image.open(...).size`` gives it: EXIF orientation is not
    applied, because neither ms-swift nor qwen-vl-utils applies it before resizing.
    A file cut short after its header reads fine here; ``verify=True`` checks the whole file
    (PNG chunk checksums; JPEG decoded at 1/8 scale; other formats decoded) to catch that.

    Raises:
        GeometryError: the source is not a readable image (the message names it by its short form).
    """
    header = read_image_header(source, verify=verify)
    return header.width, header.height


def read_image_header(source: Any, *, verify: bool = False,
                      env: Mapping[str, str] | None = None) -> ImageHeader:
    """:func:`read_image_size` plus the EXIF orientation and the source's identity."""
    if hasattr(source, 'size') and hasattr(source, 'mode') and not isinstance(source, Mapping):
        info = ImageSource(kind='pil', key='pil', name=f'<PIL {source.mode} {source.size[0]}x{source.size[1]}>')
        width, height = source.size
        return ImageHeader(*_checked_size(width, height, info.name), orientation=1, source=info)
    info = classify(source, env)
    fp = _open(source, info, env)
    return _read(fp, info, verify)


def _open(source: Any, info: ImageSource, env: Mapping[str, str] | None):
    """A file path or BytesIO for ``source``; raises GeometryError for what cannot be one."""
    name = info.name
    if info.kind == 'invalid':
        raise GeometryError(f'{name}: {info.error}.')
    if info.kind == 'url':
        raise GeometryError(f'{name}: a remote image (not fetched here).')
    if info.kind == 'path':
        if info.error and not os.path.lexists(info.path):
            raise GeometryError(f'{name}: {info.error}.')
        return _checked_file(info.path, name)
    data = _payload_bytes(source, env)
    if not data:
        raise GeometryError(f'{name}: image data is empty (0 bytes).')
    return io.BytesIO(data)


def payload_bytes(source: Any) -> bytes:
    """The decoded bytes of an in-memory source (raw bytes, base64 text, a data URL, a dict holding one).

    Raises:
        ValueError: the source holds no decodable payload.
    """
    info = classify(source)
    if info.kind not in ('bytes', 'base64', 'data_url'):
        raise ValueError(f'{info.name}: not an in-memory image ({info.kind})')
    return _payload_bytes(source, None)


def _payload_bytes(source: Any, env: Mapping[str, str] | None) -> bytes:
    """The decoded payload of an in-memory source (decoded again: payloads are never kept)."""
    if isinstance(source, Mapping):
        source = source.get('bytes') or source.get('path')
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    text = os.fspath(source)
    text = (os.fsdecode(text) if isinstance(text, bytes) else text).strip()
    if text.startswith('data:'):
        text = text[_DATA_URL.match(text).end():]
    return base64.b64decode(text)


def _checked_file(path: str, name: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise GeometryError(f'{name}: image file does not exist.') from None
    except OSError as exc:
        raise GeometryError(f'{name}: cannot read the image file ({exc.strerror or exc}).') from None
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block or never end: refused by type, as ms-swift would hang on it.
        raise GeometryError(f'{name}: not a regular file ({_file_type(st.st_mode)}).')
    if st.st_size == 0:
        raise GeometryError(f'{name}: image file is empty (0 bytes).')
    return path


def _file_type(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return what
    return 'a special file'


def _read(fp, info: ImageSource, verify: bool) -> ImageHeader:
    from PIL import Image
    name = info.name
    try:
        with Image.open(fp) as img:
            width, height = img.size
            _checked_size(width, height, name)
            orientation = _orientation(img)
        if verify:  # PIL's verify() must come straight after open: a second open
            if hasattr(fp, 'seek'):
                fp.seek(0)
            with Image.open(fp) as img:
                _verify(img, width, height)
    except GeometryError:
        raise
    except Image.DecompressionBombError as exc:
        raise GeometryError(f'{name}: image is more than the decompression-bomb limit '
                            f'{MAX_IMAGE_PIXELS} pixels ({exc}).') from None
    except Exception as exc:  # PIL raises many types on hostile files (struct.error, IndexError, ...)
        raise GeometryError(f'{name}: not a readable image ({short_text(str(exc) or type(exc).__name__, 200)}).') \
            from None
    return ImageHeader(width, height, orientation, info)


def _orientation(img) -> int:
    # PIL's PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the
    # pixel data; a header read must not decode. For PNG, use what open() already parsed.
    try:
        if img.format == 'PNG':
            raw = img.info.get('exif')
            if not raw:
                return 1
            from PIL import Image
            exif = Image.Exif()
            exif.load(raw)
            value = exif.get(EXIF_ORIENTATION, 1)
        else:
            value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block is not our business: ms-swift ignores EXIF
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _verify(img, width: int, height: int) -> None:
    """Read the whole file with bounded memory: truncation and corruption raise."""
    fmt = img.format
    if fmt == 'PNG':
        img.verify()  # chunk CRCs, streamed chunk by chunk, no decode
        return
    if fmt == 'JPEG':
        img.draft('RGB', (max(1, width // 8), max(1, height // 8)))  # every byte read, 1/64 of the pixels
    img.load()


def _checked_size(width: int, height: int, name: str) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise GeometryError(f'{name}: image sides must be positive, got {width}x{height}.')
    if width * height > MAX_IMAGE_PIXELS:
        raise GeometryError(f'{name}: image is {width}x{height} = {width * height} pixels, '
                            f'more than the decompression-bomb limit {MAX_IMAGE_PIXELS}.')
    return width, height
