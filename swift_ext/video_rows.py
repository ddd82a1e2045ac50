"""Video geometry for dataset rows and reward calls, with or without a `_geo` template in the process.

What rewards use (``video_geometry``), and what ``plan`` / ``show`` / ``check`` call for videos:

- :func:`video_settings_for`: a template's video settings as ms-swift would run them (the qwen-vl-utils
  module ms-swift patched in this process, else the environment);
- :func:`predict_source`: a video file's (or a list of frame files') geometry from its header alone;
- :func:`row_videos`: every video of a dataset row, each a ``VideoGeometry`` or the ``VideoError`` that
  says why not (for ``plan``: clamps, frames, tokens);
- :func:`geometry_for_videos` / :func:`videos_for_batch`: a reward call's videos: the template's record
  of the encode that made the prompt (``VIDEO_STORE``), else the header's prediction; None where a video
  cannot be read;
- :func:`sampled_frames`: the frames a geometry names, decoded and resized as the model saw them (for
  ``show``'s contact sheet);
- :func:`differences`: what differs between two geometries of one video (for ``check``: a rollout's
  encode against training's, such as ms-swift's vLLM-mode Qwen3-VL times).

Importing this module imports no torch, PIL, PyAV or swift, nor ``swift_ext.video_io``; reading a video does.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .families import family_of
from .geometry import VideoError, VideoGeometry
from .images import classify
from .store import VIDEO_STORE, video_limits_key
from .video_record import video_entry
from .warn import warn_once

# Which time axis a reward reads a completion's times on (SWIFT_EXT_TIME_AXIS): 'prompt' (default) the
# axis of the prompt that produced it (VideoGeometry.timestamp_origin: the clip's first frame for Qwen3-VL
# in ms-swift's vLLM mode, else the source video's start); 'source' always the source video's seconds;
# 'clip' always from the clip's first sampled frame.
TIME_AXIS_ENV = 'SWIFT_EXT_TIME_AXIS'
TIME_AXES = ('prompt', 'source', 'clip')


def video_settings_for(template: str, *, env: Mapping[str, str] | None = None) -> Any:
    """``template``'s video settings: those ms-swift patched into qwen-vl-utils in this process where it
    did (the first model loaded fixes them), else those the environment gives."""
    family, spec = family_of(template)
    if not family.records_video(spec.parent):
        raise ValueError(f'template {spec.name!r} ({family.name} family) has no video geometry in swift-ext; '
                         '`swift-ext templates` lists those that have.')
    return family.video_settings(spec.parent, env=os.environ if env is None else env)


def predict_source(template: str, source: Any, *, row_kwargs: Mapping | None = None, mode: str = 'train',
                   settings: Any = None, env: Mapping[str, str] | None = None) -> VideoGeometry:
    """The geometry ``template`` gives ``source`` (a video file, bytes, or a list of frame files), from
    headers alone. Raises ``VideoError`` naming the video where it cannot be read or is refused."""
    from .video_io import image_list_sizes, read_video_header  # PyAV on first read; the image path never imports it
    family, spec = family_of(template)
    settings = settings if settings is not None else video_settings_for(template, env=env)
    row_kwargs = dict(row_kwargs or {})
    name = classify(source[0] if isinstance(source, (list, tuple)) and source else source).name
    if isinstance(source, (list, tuple)):
        return family.predict_video_frames(spec.parent, settings, sizes=image_list_sizes(source),
                                           row_kwargs=row_kwargs, mode=mode, name=name)
    header = read_video_header(source, env=env)
    return family.predict_video(spec.parent, settings, width=header.width, height=header.height,
                                total_frames=header.total_frames, video_fps=header.video_fps,
                                row_kwargs=row_kwargs, mode=mode, name=header.name)


def row_videos(template: str, row: Mapping, *, mode: str = 'train', settings: Any = None,
               env: Mapping[str, str] | None = None) -> list[VideoGeometry | VideoError]:
    """Each video of a dataset row (its ``videos`` column, its ``chat_template_kwargs``): the geometry, or
    the error that says why there is none. Never raises for a row's content."""
    videos = row.get('videos') if isinstance(row, Mapping) else None
    if videos is None:
        return []
    if isinstance(videos, (str, bytes, dict)) or not isinstance(videos, (list, tuple)):
        videos = [videos]
    row_kwargs = row.get('chat_template_kwargs')
    row_kwargs = row_kwargs if isinstance(row_kwargs, Mapping) else {}
    settings = settings if settings is not None else video_settings_for(template, env=env)
    out: list = []
    for source in videos:
        try:
            out.append(predict_source(template, source, row_kwargs=row_kwargs, mode=mode, settings=settings,
                                      env=env))
        except VideoError as exc:
            out.append(exc)
        except Exception as exc:  # a hostile row limit (a string fps, ...): named, never raised
            out.append(VideoError(f'{classify(source).name}: cannot compute its geometry ({type(exc).__name__}: '
                                  f'{exc})'[:500]))
    return out


# --- rewards -----------------------------------------------------------------------------------------------
def rollout_mode(args: Any) -> str:
    """The template mode a GRPO run's rollouts are encoded in: ``'vllm'`` with ``--use_vllm``, else PyTorch's."""
    return 'vllm' if getattr(args, 'use_vllm', False) else 'transformers'


def geometry_for_videos(videos: Any, template: str, row_kwargs: Any, *, mode: str,
                        settings: Any = None) -> list[VideoGeometry] | None:
    """One sample's video geometries: the template's record of this prompt's encode (in ``mode``'s time
    axis) if this process has one, else predicted from the header. None (one warning per cause) where a
    video cannot be read. Never raises."""
    if videos is None:
        return []
    if isinstance(videos, (str, bytes, dict)) or not isinstance(videos, (list, tuple)):
        videos = [videos]
    row_kwargs = row_kwargs if isinstance(row_kwargs, Mapping) else {}
    limits = video_limits_key(row_kwargs) + ('vllm' if mode == 'vllm' else 'source',)
    out = []
    for source in videos:
        key = _video_key(source)
        geo = VIDEO_STORE.get(key, limits, template)
        if geo is None:
            try:
                geo = predict_source(template, source, row_kwargs=row_kwargs, mode=mode, settings=settings)
            except Exception as exc:  # VideoError, a hostile row limit, anything a row holds
                text = str(exc)
                warn_once(f'reward-video:{type(exc).__name__}:{text.split(":")[-1][:40]}',
                          f'{text[:400]} Video rewards skip such samples (None).')
                return None
        out.append(geo)
    return out


def _video_key(source: Any) -> str:
    if isinstance(source, (list, tuple)):
        return video_entry(source).key
    return classify(source).key


def videos_for_batch(kwargs: Mapping[str, Any], n: int, template: str | None, *, mode: str) -> list:
    """``video_geometry`` for each of ``n`` samples of a reward call (``[]`` for a sample with no video)."""
    videos = kwargs.get('videos')
    if not isinstance(videos, (list, tuple)) or not any(v for v in videos[:n]):
        return [[] for _ in range(n)]
    if template is None:
        warn_once('video-no-template', 'swift-ext rewards found no `_geo` template in this process and no '
                  '--template to fall back on; video geometry is unavailable (None).')
        return [None] * n
    row_kwargs = kwargs.get('chat_template_kwargs')
    row_kwargs = row_kwargs if isinstance(row_kwargs, (list, tuple)) else [None] * n
    try:
        settings = video_settings_for(template)
    except ValueError as exc:
        warn_once(f'video-settings:{template}', f'swift-ext rewards: {exc} Video rewards get None.')
        return [None] * n
    return [geometry_for_videos(videos[i] if i < len(videos) else None, template,
                                row_kwargs[i] if i < len(row_kwargs) else None, mode=mode, settings=settings)
            for i in range(n)]


def time_offset(geo: VideoGeometry, axis: str | None = None) -> float:
    """Seconds to add to a completion's times to read them on the source video's axis (see ``TIME_AXES``)."""
    axis = axis or os.environ.get(TIME_AXIS_ENV) or 'prompt'
    if axis not in TIME_AXES:
        warn_once('time-axis-env', f'{TIME_AXIS_ENV}={axis[:40]!r} is not one of {list(TIME_AXES)}; read as prompt.')
        axis = 'prompt'
    if axis == 'source':
        return 0.0
    if axis == 'clip':
        return geo.frame_times[0] if geo.frame_times else geo.video_start
    return geo.timestamp_origin


# --- check ------------------------------------------------------------------------------------------------
COMPARED = ('frame_indices', 'sample_fps', 'resized_width', 'resized_height', 'num_tokens', 'timestamps',
            'timestamp_origin', 'second_per_grid_ts')


def differences(a: VideoGeometry, b: VideoGeometry) -> dict:
    """``{field: [a's, b's]}`` for every field of ``COMPARED`` that differs (lists cut to 8 items)."""
    out = {}
    for name in COMPARED:
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            out[name] = [list(x[:8]), list(y[:8])] if isinstance(x, tuple) else [x, y]
    return out


# --- show ------------------------------------------------------------------------------------------------
def sampled_frames(source: Any, geo: VideoGeometry, *, max_frames: int | None = None) -> list:
    """The frames ``geo`` samples from ``source``, as PIL images of the resized size the model saw.

    Decoded with PyAV in one pass (frame ``i`` is the ``i``-th decoded frame, as the readers count); a
    list of frame files is opened in order (padding repeats the last). The resize is PIL's bicubic,
    close to (not bit-identical with) torchvision's antialiased bicubic that qwen-vl-utils uses.
    ``max_frames`` keeps that many, evenly spread (a contact sheet of a 768-frame sample).
    """
    from PIL import Image
    positions = list(range(geo.num_frames))
    if max_frames is not None and geo.num_frames > max_frames > 0:
        positions = sorted({round(i * (geo.num_frames - 1) / max(max_frames - 1, 1)) for i in range(max_frames)})
    wanted = [geo.frame_indices[p] for p in positions]
    size = (geo.resized_width, geo.resized_height)
    if isinstance(source, (list, tuple)):
        frames = [Image.open(source[min(i, len(source) - 1)]).convert('RGB') for i in wanted]
    else:
        frames = _decode_at(source, wanted)
    return [frame.resize(size, Image.BICUBIC) for frame in frames]


def _decode_at(source: Any, wanted: Sequence[int]) -> list:
    import av

    from .video_io import VIDEO_FORMATS, open_source
    fp, name = open_source(source, None)
    need = sorted(set(wanted))
    found: dict[int, Any] = {}
    with fp, av.open(fp, options={'format_whitelist': VIDEO_FORMATS}) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            if index in need:
                found[index] = frame.to_image()
            if index >= need[-1]:
                break
    missing = [i for i in need if i not in found]
    if missing:
        raise VideoError(f'{name}: frames {missing[:5]} are past the frames decoded ({len(found)} found).')
    return [found[i] for i in wanted]
