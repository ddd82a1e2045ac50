"""`swift-ext show VIDEO --template T [--out FILE.png]`: the frames a `_geo` template samples from a video.

The geometry comes from the file's header (no frame decoded): frames sampled (their source indices
and times in seconds), the sample rate, the one size every frame is resized to, the grid and the
tokens, the model's own time encoding. With ``--out`` the sampled frames are decoded (PyAV, one pass)
and drawn as a contact sheet at the resized size, each captioned with its index and time; frame
pairs that merge into one temporal step share a colour bar.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
from collections.abc import Sequence

from ...geometry import GeometryError, VideoGeometry
from ..output import STDOUT, write_named
from ..text import echo
from .picture import BACKGROUND, FONT_SIZE, LINE_HEIGHT, MARGIN, TEXT, draw_header, load_font
from .view import format_text, size_text

VIDEO_SUFFIXES = ('.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.flv', '.ts', '.mpg', '.mpeg', '.wmv', '.3gp',
                  '.ogv', '.mxf', '.nut', '.ivf', '.y4m')
MAX_DRAWN = 24  # frames drawn by default (evenly spread over the sample)
CELL_SIDE = 240  # a frame is drawn at most this many pixels on its longer side
COLUMNS = 6
STEP_COLOURS = ((230, 25, 75), (60, 120, 216))  # alternating per temporal step (frame pair)
BAR = 6


def is_video(path: str) -> bool:
    """Whether ``show`` reads ``path`` as a video (by its name; a list of frame files is not taken here)."""
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The options that apply to a video (a row's ``chat_template_kwargs``, the encode mode, frames drawn)."""
    g = p.add_argument_group('video (IMAGE is a video file: ' + ', '.join(VIDEO_SUFFIXES[:6]) + ', ...)')
    g.add_argument('--fps', type=float, help="a row's fps (frames sampled per second)")
    g.add_argument('--nframes', type=int, help="a row's nframes (instead of --fps)")
    g.add_argument('--video_start', type=float, help="a row's clip start, seconds")
    g.add_argument('--video_end', type=float, help="a row's clip end, seconds")
    g.add_argument('--mode', choices=('train', 'vllm'), default='train',
                   help="the encode's mode: vllm shows the time axis ms-swift hands vLLM (default: train)")
    g.add_argument('--frames', type=int, default=MAX_DRAWN, help=f'frames drawn at most (default {MAX_DRAWN})')


def row_kwargs_of(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ('fps', 'nframes', 'video_start', 'video_end')
            if getattr(args, k, None) is not None}


def _seconds(value: float) -> str:
    return f'{value:.3f}'.rstrip('0').rstrip('.') + ' s'


def video_facts(video: str, template: str, geo: VideoGeometry, mode: str) -> list[tuple[str, str]]:
    """``(label, value)`` lines: what the text output prints and the contact sheet's header shows."""
    clip = geo.end_frame - geo.start_frame + 1
    out = [('video', video), ('template', template),
           ('source', f'{size_text(geo.original_width, geo.original_height)}, {geo.total_frames} frames at '
                      f'{geo.video_fps:g} fps ({_seconds(geo.total_frames / geo.video_fps)})'),
           ('clip', f'frames {geo.start_frame}..{geo.end_frame} ({clip} frames, '
                    f'{_seconds(geo.start_frame / geo.video_fps)} to {_seconds(geo.end_frame / geo.video_fps)})'),
           ('frames sampled', f'{geo.num_frames} at {geo.sample_fps:.4g} fps: '
                              + _list(geo.frame_indices)),
           ('frame times', _list([f'{t:.2f}' for t in geo.frame_times]) + ' s'),
           ('resized', f'{size_text(geo.resized_width, geo.resized_height)} per frame'),
           ('grid', f'{geo.grid[0]} steps of {geo.frames_per_step} frames x {geo.grid[1]} x {geo.grid[2]} patches'),
           ('video tokens', f'{geo.num_tokens} ({geo.tokens_per_step} per step)'),
           ('sampling step', f'{geo.sampling_step:.4g} s (finer intervals cannot be told apart)')]
    if geo.second_per_grid_ts is not None:
        out.append(('time encoding', f'second_per_grid_ts {geo.second_per_grid_ts:.4g}'))
    if geo.timestamps:
        origin = f'; counted from {_seconds(geo.timestamp_origin)} of the source' if geo.timestamp_origin else ''
        out.append(('time encoding', _list(geo.timestamps) + f' ({mode} mode{origin})'))
    if geo.padded_frames:
        out.append(('padded', f'{geo.padded_frames} copy of the last frame (even count)'))
    if geo.clamped:
        out.append(('limit', ', '.join(map(str, geo.clamped))))
    return out


def _list(items: Sequence, shown: int = 12) -> str:
    text = ', '.join(map(str, items[:shown]))
    return text + (f', ... ({len(items)} in all)' if len(items) > shown else '')


def contact_sheet(frames: list, positions: list[int], geo: VideoGeometry, lines: Sequence[tuple[str, str]]):
    """The header, then the frames in rows of ``COLUMNS``, each with ``#k frame i  t s`` under it."""
    from PIL import Image, ImageDraw
    font = load_font()
    scale = min(1.0, CELL_SIDE / max(geo.resized_width, geo.resized_height))
    cell = (max(1, round(geo.resized_width * scale)), max(1, round(geo.resized_height * scale)))
    columns = max(1, min(COLUMNS, len(frames)))
    rows = max(1, math.ceil(len(frames) / columns))
    caption = LINE_HEIGHT
    width = max(2 * MARGIN + columns * (cell[0] + MARGIN) - MARGIN,
                2 * MARGIN + max(int(font.getlength(f'{a}: {b}')) for a, b in lines) + 8)
    header = len(lines) * LINE_HEIGHT
    height = 2 * MARGIN + header + MARGIN + rows * (cell[1] + BAR + caption + MARGIN)
    picture = Image.new('RGB', (width, height), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw_header(draw, font, (MARGIN, MARGIN, width - 2 * MARGIN, header), lines)
    top = 2 * MARGIN + header
    for k, (frame, position) in enumerate(zip(frames, positions, strict=True)):
        x = MARGIN + (k % columns) * (cell[0] + MARGIN)
        y = top + (k // columns) * (cell[1] + BAR + caption + MARGIN)
        picture.paste(frame.resize(cell) if cell != frame.size else frame, (x, y))
        step = position // geo.frames_per_step
        draw.rectangle((x, y + cell[1], x + cell[0] - 1, y + cell[1] + BAR - 1), fill=STEP_COLOURS[step % 2])
        text = f'#{position} frame {geo.frame_indices[position]}  {geo.frame_times[position]:.2f} s'
        draw.text((x, y + cell[1] + BAR + 2), text, fill=TEXT, font=load_font(FONT_SIZE - 3))
    return picture


def show_video(path: str, template: str, *, out: str | None, fmt: str | None, row_kwargs: dict, mode: str,
               frames: int) -> tuple[VideoGeometry, list[tuple[str, str]]]:
    """The geometry from the header, and the contact sheet written to ``out`` when given."""
    from ...video_rows import predict_source, sampled_frames
    geo = predict_source(template, path, row_kwargs=row_kwargs, mode=mode)
    lines = video_facts(path, template, geo, mode)
    if out is not None:
        drawn = sampled_frames(path, geo, max_frames=frames)
        positions = _positions(geo.num_frames, frames)
        if len(drawn) < geo.num_frames:
            lines.append(('drawn', f'{len(drawn)} of the {geo.num_frames} frames sampled, evenly spread'))
        lines.append(('colour bars', f'the {geo.frames_per_step} frames of one temporal step (merged into one '
                                     'grid step) share a colour'))
        buffer = io.BytesIO()
        contact_sheet(drawn, positions, geo, lines).save(buffer, format=fmt)
        write_named(out, buffer.getvalue(), option='--out')
    return geo, lines


def _positions(count: int, most: int) -> list[int]:
    # the positions sampled_frames keeps (its own rule, repeated to caption the frames)
    if count > most > 0:
        return sorted({round(i * (count - 1) / max(most - 1, 1)) for i in range(most)})
    return list(range(count))


def video_main(args: argparse.Namespace, check_out) -> int:
    """`show`'s path for a video: prints the facts (or --json), writes the sheet; exit 0, or 2 naming the file."""
    to_stdout = args.out == STDOUT
    for option in ('box', 'model'):
        if getattr(args, option, None) is not None:
            echo(f'swift-ext show: --{option} applies to images; ignored for the video {args.image}.', err=True)
    if args.frames is not None and args.frames < 1:
        echo(f'swift-ext show: --frames must be a positive integer, got {args.frames}.', err=True)
        return 2
    try:
        fmt = check_out(args.out) if args.out is not None else None
        geo, lines = show_video(args.image, args.template, out=args.out, fmt=fmt, row_kwargs=row_kwargs_of(args),
                                mode=args.mode, frames=args.frames)
    except (GeometryError, ValueError, OSError) as exc:  # VideoError is a GeometryError; a template refusal
        echo(f'swift-ext show: {exc}', err=True)
        return 2
    if args.json:
        echo(json.dumps(geo.to_dict(), indent=1))
    else:
        echo(format_text(lines), err=to_stdout)
    if args.out is not None and not to_stdout:
        echo(f'wrote {args.out}', err=args.json)
    return 0
