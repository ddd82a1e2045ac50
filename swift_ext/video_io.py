"""Reading a video's header (size, frame rate, frame count) without decoding a frame, and what follows.

The numbers are those the reader qwen-vl-utils picks would report (``FORCE_QWENVL_VIDEO_READER``,
else torchcodec when installed, else decord), because they decide which frames are sampled:

- decord: ``avg_frame_rate`` as a float; the frame count from a packet scan, which equals the
  header's ``nb_frames`` for a well-formed file (estimated from the duration when a container
  such as WebM / Matroska stores none).
- torchcodec: a packet scan; ``average_fps = frames / (last pts + duration - first pts)``, which
  can differ from the header rate in the last bits (29.97 -> 29.970000000000002).

``scan=False`` reads the header only (about half a millisecond) and gives torchcodec's rate as
frames / the header's stream span; ``scan=True`` demuxes every packet (no decoding) to count frames
and time the stream exactly as the readers do, and notices a file cut short after its header.
Files are opened by Python and handed to FFmpeg as a stream, so a name is never read as an FFmpeg
protocol (``concat:``, ``pipe:``), and only the demuxers in ``VIDEO_FORMATS`` are allowed (no
playlists that would open other files or the network).
PyAV (a dependency of qwen-vl-utils) is imported on first use.
"""
from __future__ import annotations

import base64
import binascii
import functools
import importlib.util
import io
import math
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .geometry import MAX_IMAGE_PIXELS, VideoError, VideoGeometry
from .images import classify, read_image_size
from .mp4_header import CONTAINER_NAME, Mp4Track, read_mp4_track
from .video import (
    QWEN_VERSIONS,
    VideoSettings,
    predict_image_list_geometry,
    predict_video_geometry,
    video_settings,
)

# Demuxers FFmpeg may use on a dataset's video: containers of one file, no playlists or protocols.
VIDEO_FORMATS = ('mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,gif,yuv4mpegpipe,'
                 'h264,hevc,m4v,mjpeg,ivf,nut,mxf,wtv,obu')
# Opening a file, FFmpeg's avformat_find_stream_info decodes its first frames (H.264: until it has
# guessed the reorder delay, 7 frames); none of the numbers read here comes from those pixels. Skipping
# the non-reference frames in that probe gives the same header (tests/unit/test_video_files.py pins it
# against decord and torchcodec) in a third to a tenth of the time (bench 6). A codec that gives its frame
# size only in a decoded frame (MPEG-4 Part 2 in MP4) then has none: it is probed again in full.
HEADER_OPTIONS = {'format_whitelist': VIDEO_FORMATS, 'skip_frame': 'nonref'}
FULL_PROBE_OPTIONS = {'format_whitelist': VIDEO_FORMATS}
MAX_VIDEO_FRAMES = 10_000_000  # ~46 hours at 60 fps: more is a broken or hostile header
MAX_VIDEO_FPS = 1000.0
BACKENDS = ('torchcodec', 'decord', 'torchvision')


@dataclass(frozen=True)
class VideoHeader:
    """A video stream as the chosen reader sees it: ``width`` x ``height`` per frame, ``video_fps``,
    ``total_frames``, ``duration`` seconds; ``frames_from`` says where the count came from
    (``'header'``, ``'estimate'`` from duration x rate, or ``'scan'``); ``rotation`` in degrees
    as stored (decord ignores it; torchcodec turns the frames)."""

    name: str
    width: int
    height: int
    video_fps: float
    total_frames: int
    duration: float
    codec: str
    container: str
    rotation: int
    frames_from: str
    backend: str


def video_backend(env: Mapping[str, str] | None = None) -> str:
    """The reader qwen-vl-utils 0.0.14 picks: ``FORCE_QWENVL_VIDEO_READER``, torchcodec, decord, torchvision."""
    env = os.environ if env is None else env
    forced = env.get('FORCE_QWENVL_VIDEO_READER')
    if forced is not None:
        return forced
    return _installed_backend()


@functools.lru_cache(maxsize=1)
def _installed_backend() -> str:
    # Looked up once per process: finding a package's spec walks sys.path (0.2 ms, a third of a header read).
    for backend in ('torchcodec', 'decord'):
        if importlib.util.find_spec(backend) is not None:
            return backend
    return 'torchvision'


def _file_type(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return what
    return 'a special file'


def open_source(source: Any, env: Mapping[str, str] | None) -> tuple[Any, str]:
    """``(binary file object, short name)`` for a video given as ms-swift accepts one."""
    if not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike, Mapping)):
        raise VideoError(f'<{type(source).__name__}>: a video must be a path, bytes, a base64 string, a data URL '
                         f'or a {{"path", "bytes"}} dict, got {type(source).__name__}.')
    info = classify(source, env)
    name = info.name
    if info.kind == 'invalid':
        raise VideoError(f'{name}: {info.error}.')
    if info.kind == 'url':
        raise VideoError(f'{name}: a remote video (not fetched here).')
    if info.kind == 'pil':
        raise VideoError(f'{name}: a picture, not a video.')
    if info.kind == 'path':
        try:
            st = os.stat(info.path)
        except FileNotFoundError:
            raise VideoError(f'{name}: video file does not exist.') from None
        except OSError as exc:
            raise VideoError(f'{name}: cannot read the video file ({exc.strerror or exc}).') from None
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise VideoError(f'{name}: not a regular file ({_file_type(st.st_mode)}).')
        if st.st_size == 0:
            raise VideoError(f'{name}: video file is empty (0 bytes).')
        return open(info.path, 'rb'), name  # noqa: SIM115 (closed by the caller)
    data = _payload(source)
    if not data:
        raise VideoError(f'{name}: video data is empty (0 bytes).')
    return io.BytesIO(data), name


def _payload(source: Any) -> bytes:
    if isinstance(source, Mapping):
        source = source.get('bytes') or source.get('path')
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    text = str(source).strip()
    if text.startswith('data:') and ';base64,' in text[:300]:
        text = text.split(';base64,', 1)[1]
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        return b''


def _stream_rate(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate.numerator) / rate.denominator if rate and rate.denominator else 0.0


def _scan(container, stream) -> tuple[int, float | None]:
    """``(packets, seconds from the first pts to the last pts + duration)`` of ``stream``, undecoded."""
    count, first, last = 0, None, None
    base = stream.time_base
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:  # the demuxer's flush packet; discarded packets
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        count += 1
        if pts is None:
            continue
        end = pts + (packet.duration or 0)
        first = pts if first is None else min(first, pts)
        last = end if last is None else max(last, end)
    if first is None or base is None:
        return count, None
    # torchcodec: pts_to_seconds in double, then end - begin
    return count, last * base.numerator / base.denominator - first * base.numerator / base.denominator


def _header_span(stream, container_seconds: float | None) -> float | None:
    """Seconds from the first frame's pts to the end of the last, from the header (torchcodec's scan span)."""
    base = stream.time_base
    if stream.duration and base is not None:
        start = stream.start_time or 0
        return (start + stream.duration) * base.numerator / base.denominator - start * base.numerator / base.denominator
    return container_seconds


def read_video_header(source: Any, *, scan: bool = False, backend: str | None = None,
                      env: Mapping[str, str] | None = None, parse_mp4: bool = True) -> VideoHeader:
    """The first video stream's size, frame rate and frame count, as ``backend`` would report them.

    ``source``: a path (relative paths resolve like ms-swift's: the working directory, then
    ``ROOT_IMAGE_DIR``), bytes, a base64 string or data URL, or a ``{'path', 'bytes'}`` dict.
    ``backend``: ``'decord'`` or ``'torchcodec'``; default: the one qwen-vl-utils would use.
    ``parse_mp4``: read a plain MP4 / MOV video track's ``moov`` box in Python (``mp4_header``, the same
    numbers as PyAV's in tens of microseconds); False: always PyAV.

    Raises:
        VideoError: not a readable video, or a header no reader should trust (the message names the
            video, the rule and the value).
    """
    import av
    backend = backend or video_backend(env)
    if backend not in BACKENDS:
        raise ValueError(f'`backend` should be one of {list(BACKENDS)}, got {backend!r}.')
    fp, name = open_source(source, env)
    try:
        with fp:
            track = read_mp4_track(fp) if parse_mp4 and not scan else None
            if track is not None:  # the moov box read in Python: tens of microseconds (mp4_header)
                return _from_track(track, name, backend)
            try:
                for options in (HEADER_OPTIONS, FULL_PROBE_OPTIONS):
                    fp.seek(0)
                    with av.open(fp, options=options) as container:
                        if options is HEADER_OPTIONS and not _sized(container):
                            continue  # a codec that tells its frame size only in a decoded frame
                        return _header(container, name, scan=scan, backend=backend)
            except VideoError:
                raise
            except av.FFmpegError as exc:
                raise VideoError(f'{name}: not a readable video ({_ffmpeg_reason(exc)}).') from None
    except (OSError, ValueError, IndexError, EOFError) as exc:  # ValueError covers VideoError
        if isinstance(exc, VideoError):
            raise
        raise VideoError(f'{name}: not a readable video ({type(exc).__name__}: {exc}).'[:500]) from None


def _sized(container) -> bool:
    """Whether the probe found the first video stream's frame size (or there is no video stream to size)."""
    streams = container.streams.video
    return not streams or (streams[0].codec_context.width > 0 and streams[0].codec_context.height > 0)


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, 'strerror', None) or str(exc)
    if 'Invalid argument' in text or 'returned 22' in text:
        return f'not one of the video formats read here: {VIDEO_FORMATS.replace(",", ", ")}'[:300]
    return text[:200]


def _header(container, name: str, *, scan: bool, backend: str) -> VideoHeader:
    if not container.streams.video:
        raise VideoError(f'{name}: holds no video stream (container {container.format.name}).')
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = ctx.width, ctx.height
    if width <= 0 or height <= 0:
        raise VideoError(f'{name}: the video stream has no frame size ({width}x{height}).')
    if width * height > MAX_IMAGE_PIXELS:
        raise VideoError(f'{name}: frames of {width}x{height} are more than the decompression-bomb limit '
                         f'{MAX_IMAGE_PIXELS} pixels.')
    fps = _stream_rate(stream)
    if not (0 < fps <= MAX_VIDEO_FPS and math.isfinite(fps)):
        raise VideoError(f'{name}: the frame rate must be in (0, {MAX_VIDEO_FPS:g}] frames per second, got {fps:g}.')
    count, fps, frames_from = _count_and_rate(container, stream, name, fps, scan=scan, backend=backend)
    if not 0 < count <= MAX_VIDEO_FRAMES:
        raise VideoError(f'{name}: the frame count must be in [1, {MAX_VIDEO_FRAMES}], got {count}.')
    rotation = 0
    try:
        rotation = int(round(stream.metadata.get('rotate', 0) or 0))
    except (TypeError, ValueError):
        pass
    return VideoHeader(name=name, width=width, height=height, video_fps=fps, total_frames=count,
                       duration=count / fps, codec=ctx.name, container=container.format.name, rotation=rotation,
                       frames_from=frames_from, backend=backend)


def _from_track(track: Mp4Track, name: str, backend: str) -> VideoHeader:
    """The header PyAV would give (``_header``) from an MP4 track read in Python, with the same checks."""
    if track.width * track.height > MAX_IMAGE_PIXELS:
        raise VideoError(f'{name}: frames of {track.width}x{track.height} are more than the decompression-bomb limit '
                         f'{MAX_IMAGE_PIXELS} pixels.')
    rate = track.average_rate
    fps = float(rate.numerator) / rate.denominator
    if not (0 < fps <= MAX_VIDEO_FPS and math.isfinite(fps)):
        raise VideoError(f'{name}: the frame rate must be in (0, {MAX_VIDEO_FPS:g}] frames per second, got {fps:g}.')
    count = track.frames
    if backend == 'torchcodec':  # _header_span with a start of 0 and a time base of 1 / timescale
        fps = count / ((0 + track.duration) * 1 / track.timescale - 0 * 1 / track.timescale)
    if not 0 < count <= MAX_VIDEO_FRAMES:
        raise VideoError(f'{name}: the frame count must be in [1, {MAX_VIDEO_FRAMES}], got {count}.')
    return VideoHeader(name=name, width=track.width, height=track.height, video_fps=fps, total_frames=count,
                       duration=count / fps, codec=track.codec, container=CONTAINER_NAME, rotation=0,
                       frames_from='header', backend=backend)


def _count_and_rate(container, stream, name: str, fps: float, *, scan: bool, backend: str) -> tuple[int, float, str]:
    """``(frames, frame rate, where the count came from)`` as ``backend`` reports them."""
    container_seconds = container.duration / 1_000_000 if container.duration else None
    if scan:
        count, span = _scan(container, stream)
        if backend == 'torchcodec' and span:
            fps = count / span
        if stream.frames and count < stream.frames:
            raise VideoError(f'{name}: the header promises {stream.frames} frames but the file holds {count} '
                             '(cut short?).')
        return count, fps, 'scan'
    if stream.frames > 0:
        count, frames_from = stream.frames, 'header'
    elif container_seconds:
        count, frames_from = int(fps * container_seconds), 'estimate'  # decord's fallback
    else:
        raise VideoError(f'{name}: the header gives neither a frame count nor a duration; read it with scan=True.')
    if backend == 'torchcodec':
        span = _header_span(stream, container_seconds)
        if span:  # what the scan gives when the header's timing is right: frames / (end - begin)
            fps = count / span
    return count, fps, frames_from


def image_list_sizes(frames: Sequence[Any]) -> list[tuple[int, int]]:
    """``(width, height)`` of every frame file of an image-list video, from headers only."""
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
        raise VideoError(f'an image-list video must be a list of frames, got {type(frames).__name__}.')
    return [read_image_size(frame) for frame in frames]


def predict_from_source(source: Any, *, version: str = 'v2_5', mode: str = 'train',
                        settings: VideoSettings | None = None, row_kwargs: Mapping[str, Any] | None = None,
                        scan: bool = False, backend: str | None = None,
                        env: Mapping[str, str] | None = None) -> VideoGeometry:
    """The geometry an encode would record for ``source`` (a video, or a list of frame files).

    See :func:`swift_ext.video.predict_video_geometry` for ``version`` / ``mode`` / ``row_kwargs``.
    """
    settings = settings or video_settings(patch_size=QWEN_VERSIONS.get(version, 14), env=env)
    if isinstance(source, (list, tuple)):
        return predict_image_list_geometry(sizes=image_list_sizes(source), version=version, mode=mode,
                                           settings=settings, row_kwargs=row_kwargs)
    header = read_video_header(source, scan=scan, backend=backend, env=env)
    return predict_video_geometry(width=header.width, height=header.height, total_frames=header.total_frames,
                                  video_fps=header.video_fps, version=version, mode=mode, settings=settings,
                                  row_kwargs=row_kwargs, name=header.name)


def benchmark_header_vs_decode(path: str, *, version: str = 'v2_5', repeats: int = 20,
                               row_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Seconds per video for the geometry from the header against ``qwen_vl_utils.fetch_video``.

    For ``swift-ext bench``: returns ``header_s`` and ``decode_s`` (best of ``repeats`` and of 3),
    ``speedup``, and whether both give the same frame count and size (``agree``).
    Imports torch and qwen-vl-utils; call it only where they are installed.
    """
    from qwen_vl_utils import fetch_video

    patch = QWEN_VERSIONS[version]
    settings = video_settings(patch_size=patch)
    geo = predict_from_source(path, version=version, settings=settings, row_kwargs=row_kwargs)
    header_s = min(_timed(lambda: predict_from_source(path, version=version, settings=settings,
                                                      row_kwargs=row_kwargs), repeats) for _ in range(3))
    ele = {'video': path, **(row_kwargs or {})}
    kwargs = {'image_patch_size': patch} if version == 'v3' else {}
    video, _ = fetch_video(dict(ele), return_video_sample_fps=True, **kwargs)
    decode_s = min(_timed(lambda: fetch_video(dict(ele), return_video_sample_fps=True, **kwargs), 1)
                   for _ in range(3))
    t, _, h, w = video.shape
    return {'path': path, 'header_s': header_s, 'decode_s': decode_s, 'speedup': decode_s / header_s,
            'agree': (t, w, h) == (geo.num_frames, geo.resized_width, geo.resized_height)}


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats
