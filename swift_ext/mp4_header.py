"""An MP4 / MOV video track's size, frame count and timing, read from its ``moov`` box in Python.

Why not PyAV alone: opening a file, FFmpeg's ``avformat_find_stream_info`` decodes its first frames
(H.264: until it has guessed the reorder delay) and takes 0.2-1.8 ms; the numbers a video's geometry
needs are in the ``moov`` box, a few kilobytes read in tens of microseconds. No maintained library
reads them without FFmpeg, so this is written here, for the one simple case it can vouch for, and
``read_mp4_track`` returns None for everything else (the caller then asks PyAV):

- one ISO BMFF file with its ``moov`` among the first ``MAX_TOP_BOXES`` boxes, not fragmented
  (no ``mvex``), holding exactly one video track (handler ``vide``) of H.264 or HEVC (``avc1`` /
  ``avc3`` / ``hvc1`` / ``hev1``);
- its ``stts`` (sample durations) and ``mdhd`` (timescale, duration) present and sane; an edit list,
  if any, of one entry at rate 1 that starts inside the media and covers it to its end (what muxers
  write for B-frame delay).

The numbers, as FFmpeg's mov demuxer gives them (``libavformat/mov.c``): the frame count is the
``stts`` sample total (``nb_frames``); the average rate is ``samples * timescale / stts duration``
(``avg_frame_rate``, reduced); the stream's duration ``min(mdhd duration, stts duration, the edit's
segment)`` in ``1 / timescale`` from a start of 0; the frame size is the sample entry's (FFmpeg then reads the same
from the SPS for these codecs). ``tests/unit/test_video_files.py`` pins every value against PyAV's.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

MAX_TOP_BOXES = 64
MAX_MOOV_BYTES = 64 << 20
CODECS = {b'avc1': 'h264', b'avc3': 'h264', b'hvc1': 'hevc', b'hev1': 'hevc'}
CONTAINERS = (b'trak', b'mdia', b'minf', b'stbl', b'edts')
CONTAINER_NAME = 'mov,mp4,m4a,3gp,3g2,mj2'  # FFmpeg's demuxer name, as PyAV reports it


@dataclass(frozen=True)
class Mp4Track:
    """The video track as FFmpeg's mov demuxer reports it (see the module's docstring)."""

    width: int
    height: int
    frames: int
    average_rate: Fraction
    duration: int  # in 1 / timescale
    timescale: int
    codec: str


def _boxes(data: bytes, start: int, end: int):
    """``(type, body start, body end)`` of each box in ``data[start:end]``; stops at a malformed one."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from('>I4s', data, offset)
        head = 8
        if size == 1:
            if offset + 16 > end:
                return
            size, head = struct.unpack_from('>Q', data, offset + 8)[0], 16
        elif size == 0:
            size = end - offset
        if size < head or offset + size > end:
            return
        yield kind, offset + head, offset + size
        offset += size


def _moov(fp) -> bytes | None:
    """The ``moov`` box's body, found by skipping the top-level boxes before it (``mdat`` unread)."""
    for _ in range(MAX_TOP_BOXES):
        head = fp.read(8)
        if len(head) < 8:
            return None
        size, kind = struct.unpack('>I4s', head)
        skip = size - 8
        if size == 1:
            extra = fp.read(8)
            if len(extra) < 8:
                return None
            skip = struct.unpack('>Q', extra)[0] - 16
        elif size == 0:
            return None if kind != b'moov' else _read_rest(fp)
        if skip < 0:
            return None
        if kind == b'moov':
            if skip > MAX_MOOV_BYTES:
                return None
            data = fp.read(skip)
            return data if len(data) == skip else None
        if kind == b'moof':
            return None
        fp.seek(skip, 1)
    return None


def _read_rest(fp) -> bytes | None:
    data = fp.read(MAX_MOOV_BYTES + 1)
    return data if len(data) <= MAX_MOOV_BYTES else None


def _collect(data: bytes, start: int, end: int, found: dict) -> None:
    for kind, body, stop in _boxes(data, start, end):
        if kind in CONTAINERS:
            _collect(data, body, stop, found)
        elif kind not in found:
            found[kind] = (body, stop)


def read_mp4_track(fp) -> Mp4Track | None:
    """The one video track of an MP4 / MOV file open at its start, or None where this module does not vouch."""
    try:
        moov = _moov(fp)
        if moov is None:
            return None
        return _track(moov)
    except (struct.error, OSError, ValueError, ZeroDivisionError, OverflowError):
        return None


def _track(moov: bytes) -> Mp4Track | None:
    movie_scale, video = None, []
    for kind, body, stop in _boxes(moov, 0, len(moov)):
        if kind == b'mvex':
            return None  # fragmented: the samples live in moof boxes
        if kind == b'mvhd':
            version = moov[body]
            movie_scale = struct.unpack_from('>I', moov, body + (20 if version == 1 else 12))[0]
        if kind == b'trak':
            found: dict = {}
            _collect(moov, body, stop, found)
            hdlr = found.get(b'hdlr')
            if hdlr and moov[hdlr[0] + 8:hdlr[0] + 12] == b'vide':
                video.append(found)
    if len(video) != 1 or not movie_scale:
        return None
    return _video(moov, video[0], movie_scale)


def _video(data: bytes, found: dict, movie_scale: int) -> Mp4Track | None:
    if not all(k in found for k in (b'mdhd', b'stsd', b'stts')):
        return None
    body = found[b'mdhd'][0]
    if data[body] == 1:
        timescale, duration = struct.unpack_from('>IQ', data, body + 20)
    else:
        timescale, duration = struct.unpack_from('>II', data, body + 12)
    stsd = found[b'stsd'][0]
    count, = struct.unpack_from('>I', data, stsd + 4)
    entry = stsd + 8
    if count != 1 or data[entry + 4:entry + 8] not in CODECS:
        return None
    codec = CODECS[data[entry + 4:entry + 8]]
    width, height = struct.unpack_from('>HH', data, entry + 32)
    stts = found[b'stts'][0]
    entries, = struct.unpack_from('>I', data, stts + 4)
    if not 0 < entries <= (found[b'stts'][1] - stts - 8) // 8:
        return None
    frames = ticks = 0
    for i in range(entries):
        n, delta = struct.unpack_from('>II', data, stts + 8 + 8 * i)
        frames += n
        ticks += n * delta
    if not (frames > 0 and ticks > 0 and timescale > 0 and duration > 0 and width > 0 and height > 0):
        return None
    duration = min(duration, ticks)
    if not _edit_list_covers(data, found, timescale, movie_scale, duration) or not _upright(data, found):
        return None
    edit = _edit_ticks(data, found, timescale, movie_scale)
    if edit is not None:  # FFmpeg ends the stream where the edit ends (its segment rescaled, rounded to nearest)
        duration = min(duration, edit)
    return Mp4Track(width=width, height=height, frames=frames, average_rate=Fraction(frames * timescale, ticks),
                    duration=duration, timescale=timescale, codec=codec)


def _edit_list_covers(data: bytes, found: dict, timescale: int, movie_scale: int, duration: int) -> bool:
    """No edit list, or one entry at rate 1 from inside the media to its end (a start past 0 only with
    composition offsets: the B-frame delay a muxer undoes)."""
    elst = found.get(b'elst')
    if elst is None:
        return True
    body = elst[0]
    version = data[body]
    count, = struct.unpack_from('>I', data, body + 4)
    if count != 1:
        return False
    if version == 1:
        segment, media_time, rate = struct.unpack_from('>Qqi', data, body + 8)
    else:
        segment, media_time, rate = struct.unpack_from('>Iii', data, body + 8)
    if rate != 0x10000 or not 0 <= media_time < duration:
        return False
    if media_time and b'ctts' not in found:  # a shift that drops frames, not one that undoes B-frame delay
        return False
    # the segment is in the movie's timescale (often ms), rounded down: within one of its ticks covers it
    return (segment + 1) * timescale >= duration * movie_scale


def _edit_ticks(data: bytes, found: dict, timescale: int, movie_scale: int) -> int | None:
    elst = found.get(b'elst')
    if elst is None:
        return None
    body = elst[0]
    segment = struct.unpack_from('>Q' if data[body] == 1 else '>I', data, body + 8)[0]
    return (segment * timescale + movie_scale // 2) // movie_scale  # av_rescale: to nearest, halves up


IDENTITY = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _upright(data: bytes, found: dict) -> bool:
    """The track's display matrix is the identity (a rotated track is left to PyAV and its side data)."""
    tkhd = found.get(b'tkhd')
    if tkhd is None:
        return False
    body = tkhd[0]
    matrix = struct.unpack_from('>9i', data, body + (52 if data[body] == 1 else 40))
    return matrix == IDENTITY
