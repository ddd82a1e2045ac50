"""A frame strip for the `review` and `score` galleries: the frames a video's geometry sampled, their times,
and under them the clip's timeline with the true interval and the predicted one.

Frames are decoded from the file (PyAV, one pass: ``video_rows.sampled_frames``) only where the gallery's
embedding policy allows the file (``embed``); the strip is a JPEG in a data URL, its size bounded by
``STRIP_FRAMES`` frames of at most ``FRAME_SIDE`` pixels.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from ..geometry import VideoGeometry
from .page import esc

STRIP_FRAMES = 8
FRAME_SIDE = 120
GAP = 4
TIMELINE = 34
TRUTH = (40, 170, 70)
PREDICTED = (220, 50, 50)
AXIS = (90, 90, 90)
BACKGROUND = (255, 255, 255)
CSS = """
.vstrip { margin: 12px 0 18px; }
.vstrip img { max-width: 100%; border: 1px solid #ccc; }
.vstrip .caption { font: 13px sans-serif; color: #333; }
"""


def strip_image(frames: Sequence[Any], positions: Sequence[int], geo: VideoGeometry,
                truth: Sequence[Sequence[float]] = (), predicted: Sequence[Sequence[float]] = ()):
    """The frames side by side, each captioned with its time, over the clip's timeline (seconds of the source)."""
    from PIL import Image, ImageDraw

    from .show.picture import load_font
    scale = min(1.0, FRAME_SIDE / max(geo.resized_width, geo.resized_height))
    cell = (max(1, round(geo.resized_width * scale)), max(1, round(geo.resized_height * scale)))
    font = load_font(11)
    width = max(1, len(frames)) * (cell[0] + GAP) + GAP
    height = GAP + cell[1] + 16 + TIMELINE
    picture = Image.new('RGB', (width, height), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    for k, (frame, position) in enumerate(zip(frames, positions, strict=True)):
        x = GAP + k * (cell[0] + GAP)
        picture.paste(frame.resize(cell), (x, GAP))
        draw.text((x, GAP + cell[1] + 2), f'{geo.frame_times[position]:.2f} s', fill=(20, 20, 20), font=font)
    lo, hi = geo.video_start, geo.video_end
    span = max(hi - lo, 1e-9)
    top = GAP + cell[1] + 18

    def x_of(t: float) -> int:
        return GAP + round((min(max(t, lo), hi) - lo) / span * (width - 2 * GAP))
    draw.line((GAP, top + 14, width - GAP, top + 14), fill=AXIS, width=1)
    for t in geo.frame_times:
        draw.line((x_of(t), top + 11, x_of(t), top + 17), fill=AXIS)
    for intervals, colour, y in ((truth, TRUTH, top + 2), (predicted, PREDICTED, top + 20)):
        for start, end in intervals:
            draw.rectangle((x_of(start), y, max(x_of(start) + 1, x_of(end)), y + 7), fill=colour)
    return picture


def positions_of(count: int, most: int = STRIP_FRAMES) -> list[int]:
    """The positions ``sampled_frames(max_frames=most)`` keeps, to caption them."""
    if count > most > 0:
        return sorted({round(i * (count - 1) / max(most - 1, 1)) for i in range(most)})
    return list(range(count))


def strip_data_url(source: Any, geo: VideoGeometry, truth=(), predicted=()) -> str:
    """The strip as a JPEG data URL (raises VideoError / OSError where the video cannot be decoded)."""
    from ..video_rows import sampled_frames
    frames = sampled_frames(source, geo, max_frames=STRIP_FRAMES)
    buffer = io.BytesIO()
    strip_image(frames, positions_of(geo.num_frames), geo, truth, predicted).save(buffer, format='JPEG', quality=85)
    return 'data:image/jpeg;base64,' + base64.b64encode(buffer.getvalue()).decode()


def strip_html(title: str, url: str | None, caption: str, note: str | None = None) -> str:
    """One strip in a gallery page: its title, the picture (or why it is not shown) and a caption."""
    picture = f'<img src="{url}" alt="{esc(title)}">' if url else f'<p class="note">{esc(note or "not drawn")}</p>'
    return (f'<div class="vstrip"><div class="caption"><b>{esc(title)}</b></div>{picture}'
            f'<div class="caption">{esc(caption)}</div></div>')
