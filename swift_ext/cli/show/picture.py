"""`show`'s picture: the facts, the model's frame (padding, content, tiles or token cells), the global view."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ...geometry import ImageGeometry
from ...settings import PreprocessSettings
from .view import ModelView, model_view, size_text

# Colours chosen to be told apart by eye and by tests counting pixels: nothing a resized photo
# is drawn with is touched by them, and a grey image can never contain them.
TILE_LINE = (255, 0, 255)
TOKEN_LINE = (0, 255, 255)
GLOBAL_LINE = (255, 160, 0)
FRAME_LINE = (128, 128, 128)
PAD_FILL = (48, 48, 48)
PAD_HATCH = (96, 96, 96)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
PLACEHOLDER = (200, 200, 200)  # where an image over MAX_DECODE_PIXELS would be
BOX_LINE = (0, 255, 0)  # `--box`, where the model sees it
BOX_LINE_WIDTH = 2

MAX_VIEW_SIDE = 960  # the model's frame is drawn at most this many pixels on its longer side
MIN_CELL_PX = 6  # token grid lines closer than this on screen are thinned to every k-th token
MARGIN = 16
GAP = 24
FONT_SIZE = 15
LINE_HEIGHT = FONT_SIZE + 7
TILE_LINE_WIDTH = 2
HATCH_STEP = 10
FONT_FILES = ('DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf')


# --- layout -----------------------------------------------------------------------------------------
def load_font(size: int = FONT_SIZE):
    """DejaVu Sans where installed (the pictures in docs/ use it), else PIL's built-in font."""
    from PIL import ImageFont
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


@dataclass(frozen=True)
class Layout:
    """Where everything lies in the picture, in picture pixels; boxes are (left, top, width, height)."""

    size: tuple[int, int]
    scale: float  # picture pixels per model pixel
    header: tuple[int, int, int, int]
    model: tuple[int, int, int, int]  # the frame
    global_view: tuple[int, int, int, int] | None
    captions: tuple[tuple[int, int, str], ...]
    legend: tuple[int, int, tuple[tuple[tuple[int, int, int], str], ...]]


def _text_width(font, text: str) -> int:
    return int(math.ceil(font.getlength(text)))


def captions_for(view: ModelView, scale: float) -> tuple[str, str | None]:
    shown = '' if scale == 1 else f', drawn at {scale:.0%}'
    what = 'canvas' if view.padded else 'model input'
    model = f'{what} {size_text(*view.frame)}{shown}'
    glob = f'{view.global_name} {size_text(*view.global_size)}' if view.global_size else None
    return model, glob


def legend_for(view: ModelView, step: int, box: bool = False) -> tuple[tuple[tuple[int, int, int], str], ...]:
    items = [(BOX_LINE, '--box')] if box else []
    if view.tiles is not None:
        items.append((TILE_LINE, 'tile boundary'))
    if view.padded:
        items.append((PAD_HATCH, 'padding'))
    if view.cells is not None:
        items.append((TOKEN_LINE, 'one visual token' if step == 1 else f'a line every {step} visual tokens'))
    if view.global_size is not None:
        items.append((GLOBAL_LINE, view.global_name))
    return tuple(items)


def view_scale(view: ModelView) -> float:
    return min(1.0, MAX_VIEW_SIDE / max(view.frame))


def cell_step(view: ModelView, scale: float) -> int:
    """Draw every k-th token line so that lines stay ``MIN_CELL_PX`` apart on screen."""
    if view.cells is None:
        return 1
    cell = min(view.frame[0] / view.cells[0], view.frame[1] / view.cells[1]) * scale
    return max(1, math.ceil(MIN_CELL_PX / cell))


def layout_for(view: ModelView, lines: Sequence[tuple[str, str]], font=None, box: bool = False) -> Layout:
    font = font or load_font()
    scale = view_scale(view)
    label_w = max(_text_width(font, label + ':') for label, _ in lines) + 10
    header_w = label_w + max(_text_width(font, value) for _, value in lines)
    header = (MARGIN, MARGIN, header_w, LINE_HEIGHT * len(lines))
    model_caption, global_caption = captions_for(view, scale)
    top = MARGIN + header[3] + GAP // 2
    panel_top = top + LINE_HEIGHT
    model_w, model_h = round(view.frame[0] * scale), round(view.frame[1] * scale)
    model = (MARGIN, panel_top, model_w, model_h)
    captions = [(MARGIN, top, model_caption)]
    right, bottom = MARGIN + max(model_w, _text_width(font, model_caption)), panel_top + model_h
    global_view = None
    if view.global_size is not None:
        gx = right + GAP
        global_view = (gx, panel_top, round(view.global_size[0] * scale), round(view.global_size[1] * scale))
        captions.append((gx, top, global_caption))
        right = gx + max(global_view[2], _text_width(font, global_caption))
        bottom = max(bottom, panel_top + global_view[3])
    legend_items = legend_for(view, cell_step(view, scale), box)
    legend_y = bottom + GAP // 2
    legend_w = sum(LINE_HEIGHT + _text_width(font, text) + GAP for _, text in legend_items)
    width = max(MARGIN + header_w, right, MARGIN + legend_w) + MARGIN
    height = legend_y + (LINE_HEIGHT if legend_items else 0) + MARGIN
    return Layout(size=(width, height), scale=scale, header=header, model=model, global_view=global_view,
                  captions=tuple(captions), legend=(MARGIN, legend_y, legend_items))


# --- drawing ----------------------------------------------------------------------------------------
def draw_header(draw, font, box: tuple[int, int, int, int], lines: Sequence[tuple[str, str]]) -> None:
    label_w = max(_text_width(font, label + ':') for label, _ in lines) + 10
    for i, (label, value) in enumerate(lines):
        y = box[1] + i * LINE_HEIGHT
        draw.text((box[0], y), label + ':', fill=TEXT, font=font)
        draw.text((box[0] + label_w, y), value, fill=TEXT, font=font)


def line_positions(length: int, count: int, step: int = 1) -> list[int]:
    """Left (or top) pixel of each of ``count + 1`` boundaries over ``length`` pixels, every ``step``-th."""
    marks = sorted({min(round(i * length / count), length - 1) for i in range(0, count + 1, step)} | {length - 1})
    return marks


def draw_lines(draw, box, counts: tuple[int, int], colour, width: int = 1, step: int = 1) -> None:
    """Boundaries of a ``cols x rows`` grid over ``box``, the outer ones included, ``width`` px wide."""
    left, top, w, h = box
    for x in line_positions(w, counts[0], step):
        x0 = min(max(x - width // 2, 0), w - width)
        draw.rectangle((left + x0, top, left + x0 + width - 1, top + h - 1), fill=colour)
    for y in line_positions(h, counts[1], step):
        y0 = min(max(y - width // 2, 0), h - width)
        draw.rectangle((left, top + y0, left + w - 1, top + y0 + width - 1), fill=colour)


def draw_padding(draw, box) -> None:
    left, top, w, h = box
    draw.rectangle((left, top, left + w - 1, top + h - 1), fill=PAD_FILL)
    for d in range(-h, w, HATCH_STEP):  # diagonal hatching, clipped to the frame
        x0, y0 = left + max(d, 0), top + max(-d, 0)
        run = min(w - max(d, 0), h - max(-d, 0))
        if run > 0:
            draw.line((x0, y0, x0 + run - 1, y0 + run - 1), fill=PAD_HATCH)


def _paste(draw, picture, image, box: tuple[int, int, int, int]) -> None:
    """The image resized into ``box`` (left, top, width, height), or the placeholder where it was not decoded."""
    from PIL import Image
    left, top, width, height = box
    if image is None:
        draw.rectangle((left, top, left + width - 1, top + height - 1), fill=PLACEHOLDER)
        return
    picture.paste(image.resize((width, height), Image.Resampling.BICUBIC), (left, top))


def render(image, geo: ImageGeometry, settings: PreprocessSettings, lines: Sequence[tuple[str, str]],
           box: Sequence[float] | None = None):
    """The picture: facts, the model's frame (padding, content, tiles or token cells) and the global view.

    ``image`` None (not decoded: see ``load_image``) draws the content as a flat placeholder; ``box`` (model-frame
    pixels) is outlined on the frame, over everything else.
    """
    from PIL import Image, ImageDraw
    font = load_font()
    view = model_view(geo, settings)
    lay = layout_for(view, lines, font, box is not None)
    picture = Image.new('RGB', lay.size, BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw_header(draw, font, lay.header, lines)
    for x, y, text in lay.captions:
        draw.text((x, y), text, fill=TEXT, font=font)
    mx, my, mw, mh = lay.model
    s = lay.scale
    draw.rectangle((mx - 1, my - 1, mx + mw, my + mh), outline=FRAME_LINE)
    if view.padded:
        draw_padding(draw, lay.model)
    cl, ct, cw, ch = view.content
    content_box = (mx + round(cl * s), my + round(ct * s), max(1, round(cw * s)), max(1, round(ch * s)))
    _paste(draw, picture, image, content_box)
    if view.cells is not None:
        draw_lines(draw, lay.model, view.cells, TOKEN_LINE, step=cell_step(view, s))
    if view.tiles is not None:
        draw_lines(draw, lay.model, view.tiles, TILE_LINE, width=TILE_LINE_WIDTH)
    if box is not None:
        x1, y1, x2, y2 = (round(v * s) for v in box)
        draw.rectangle((mx + x1, my + y1, mx + max(x1, x2 - 1), my + max(y1, y2 - 1)), outline=BOX_LINE,
                       width=BOX_LINE_WIDTH)
    if lay.global_view is not None:
        gx, gy, gw, gh = lay.global_view
        _paste(draw, picture, image, (gx, gy, gw, gh))
        draw.rectangle((gx - 2, gy - 2, gx + gw + 1, gy + gh + 1), outline=GLOBAL_LINE, width=2)
    lx, ly, items = lay.legend
    for colour, text in items:
        draw.rectangle((lx, ly + 3, lx + FONT_SIZE - 1, ly + 3 + FONT_SIZE - 1), fill=colour, outline=TEXT)
        draw.text((lx + LINE_HEIGHT, ly), text, fill=TEXT, font=font)
        lx += LINE_HEIGHT + _text_width(font, text) + GAP
    return picture
