"""Writing a command's outputs without following symlinks.

A report folder may sit inside a run folder that came from someone else (an untarred run,
a shared disk), so a file already there may be a symlink planted to redirect our write.
Every output is written to a fresh temporary file created in the real output folder with
``O_CREAT | O_EXCL | O_NOFOLLOW`` (it cannot be an existing file or a link), then renamed
over the target with ``os.replace``.

A rename replaces whatever directory entry is at the target, so the target is checked first
(and again immediately before the rename): only a regular file is replaced. Anything else there
(a symlink, a character or block device, a FIFO, a socket, a folder) is refused with an error
naming it, and the command exits 2: renaming over ``/dev/null`` as root would replace the
device, over ``/dev/stdout`` the link. Where a user would expect it (``score --html -``,
``show --out -``), ``-`` writes to standard output instead (``write_named``).

The folder itself is checked too: ``prepare_out_dir`` refuses one that is a symlink (or
has a symlink among the components the tool created), unless the user named the folder
explicitly, in which case the user chose where it points.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

from .bounded import file_kind

STDOUT = '-'


class OutputError(OSError):
    """An output folder or file that cannot be written safely: says which, and why."""


def prepare_out_dir(path: str, *, named_by_user: bool) -> str:
    """Create ``path`` if needed and return its real path; refuse a symlinked default folder.

    Args:
        path: the output folder.
        named_by_user: True when the user passed the folder (``--out``); a symlink is then
            followed as asked. False for a default folder inside an input (``RUN/review``),
            where a symlink is refused.
    """
    if os.path.islink(path) and not named_by_user:
        raise OutputError(f'output folder {path} is a symlink (to {os.readlink(path)!r}); refusing to write '
                          'through it. Remove it, or name an output folder with --out.')
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise OutputError(f'output folder {path} exists and is not a folder.') from None
    except OSError as exc:
        raise OutputError(f'cannot create output folder {path}: {exc.strerror or exc}.') from None
    if not os.path.isdir(path):
        raise OutputError(f'output folder {path} exists and is not a folder.')
    if os.path.islink(path) and not named_by_user:  # appeared between the check and makedirs
        raise OutputError(f'output folder {path} is a symlink; refusing to write through it.')
    return os.path.realpath(path)


@contextlib.contextmanager
def replacing(path: str, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without error (``write_bytes``'s rule).

    For outputs written as they are made (``score --rows``): the temporary file is created next to
    the target with a random name and ``O_EXCL | O_NOFOLLOW``, renamed over ``path`` at the end, and
    removed on any error. Only a regular file at ``path`` is replaced (``OutputError`` otherwise).
    """
    folder = os.path.dirname(path) or '.'
    _check_target(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
    tmp = os.path.join(folder, f'.{os.path.basename(path)}.{secrets.token_hex(6)}.tmp')
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as exc:
        raise OutputError(f'cannot write {path}: {exc.strerror or exc}.') from None
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
        _check_target(path)  # again: something may have been put there meanwhile
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f'cannot write {path}: {exc.strerror or exc}.') from None
        raise


def write_bytes(path: str, data: bytes | str, mode: int = 0o644) -> str:
    """Write ``data`` to ``path`` atomically without following a symlink at ``path``.

    The temporary file is created next to the target (same file system, so the rename is
    atomic) with a random name and ``O_EXCL | O_NOFOLLOW``; on any error it is removed.
    Only a regular file at ``path`` is replaced; anything else there (a symlink, a folder, a
    device, a FIFO, a socket) is refused with ``OutputError``, and nothing is written.
    """
    if isinstance(data, str):
        data = data.encode('utf-8')
    with replacing(path, mode) as f:
        f.write(data)
    return path


def write_text(path: str, text: str) -> str:
    """``write_bytes`` for text (UTF-8)."""
    return write_bytes(path, text.encode('utf-8'))


def write_named(path: str, data: bytes | str, *, option: str) -> str:
    """Write ``data`` to the file the user named with ``option`` (``-``: standard output); its name."""
    if path != STDOUT:
        _check_target(path, option=option)
        return write_bytes(path, data)
    if isinstance(data, str):
        data = data.encode('utf-8')
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return '<stdout>'


def _check_target(path: str, option: str = '') -> None:
    """Refuse an existing ``path`` that is not a regular file (see the module's rule)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f'cannot write {path}: {exc.strerror or exc}.') from None
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f'cannot write {path}: a folder is in the way.')
    named = f'{option} ' if option else ''
    if stat.S_ISLNK(st.st_mode):
        what = f'a symlink (to {os.readlink(path)!r}); name the file itself'
        if option:
            what += ", or '-' for standard output"
    else:
        what = file_kind(st.st_mode)
    raise OutputError(f'cannot write {named}{path}: it is {what}. An output replaces only a regular file; '
                      'nothing was written.')

