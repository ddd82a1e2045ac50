"""`swift-ext show IMAGE --template T [--out FILE.png]`: draw what a `_geo` template hands the model.

The geometry is ``settings_for(template, swift_max_pixels=...).predict(...)`` for the file's
header size: the same arithmetic ``swift-ext plan`` uses and the `_geo` templates check themselves
against, under ms-swift's environment variables and ``--max_pixels``. The picture is drawn
from ``ImageGeometry`` fields (and ``merge_size`` from the settings where the grid alone
cannot say it), never from a family's name, so a new family is drawn without changes here:

* tiling (``tile_cols`` set): the frame the model answers in (``canvas_*``, else the resized
  image) with the resized image at ``(pad_left, pad_top)``, the padding hatched, tile
  boundaries in ``TILE_LINE``, and the global view (``global_*``, or one tile's size for a
  thumbnail) beside it;
* a patch grid (``grid`` set, or ``token_rows`` / ``token_cols`` in ``extra``): the resized
  image with one ``TOKEN_LINE`` cell per visual token (``merge x merge`` patches);
* anything else: the resized image as the model gets it.

The facts printed (and drawn above the picture) are the geometry's numbers; ``--json``
prints the geometry dict. Exit status: 0, or 2 for an input that cannot be used.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..families import family_of
from ..geometry import GeometryError, ImageGeometry
from ..images import read_image_size
from ..settings import PreprocessSettings, settings_for

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

MAX_VIEW_SIDE = 960  # the model's frame is drawn at most this many pixels on its longer side
MIN_CELL_PX = 6  # token grid lines closer than this on screen are thinned to every k-th token
MARGIN = 16
GAP = 24
FONT_SIZE = 15
LINE_HEIGHT = FONT_SIZE + 7
TILE_LINE_WIDTH = 2
HATCH_STEP = 10
MAX_LABEL_CHARS = 100  # a longer image path is cut in the middle
FONT_FILES = ('DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf')


class ShowError(ValueError):
    """An input `show` cannot use; the message names it, the rule and the value."""


# --- what to draw, from the geometry alone ------------------------------------------------------
@dataclass(frozen=True)
class ModelView:
    """The model's view of one image, in model pixels (``frame`` is what its answers refer to)."""

    frame: tuple[int, int]  # (width, height): canvas, else the resized image
    content: tuple[int, int, int, int]  # (left, top, width, height) of the resized image in the frame
    tiles: tuple[int, int] | None  # (cols, rows)
    tile_size: tuple[float, float] | None
    global_size: tuple[int, int] | None  # the extra whole-image view, where there is one
    global_name: str  # 'global view' or 'thumbnail'
    cells: tuple[int, int] | None  # (cols, rows) of visual-token cells over the frame
    grid_note: str  # how the cells were derived, for the facts

    @property
    def padded(self) -> bool:
        return self.content != (0, 0) + self.frame


def frame_size(geo: ImageGeometry) -> tuple[int, int]:
    """The padded canvas (``canvas_*``, or a family's ``extra`` canvas) or else the resized size."""
    extra = dict(geo.extra)
    width = geo.canvas_width or extra.get('canvas_width') or geo.resized_width
    height = geo.canvas_height or extra.get('canvas_height') or geo.resized_height
    return int(width), int(height)


def merge_of(geo: ImageGeometry, settings: PreprocessSettings) -> int:
    """Patches per token side: from ``t * h * w / tokens`` when that is a square, else the settings'."""
    t, gh, gw = geo.grid
    if geo.num_tokens > 0 and (t * gh * gw) % geo.num_tokens == 0:
        merge = math.isqrt(t * gh * gw // geo.num_tokens)
        if merge > 0 and merge * merge * geo.num_tokens == t * gh * gw and gh % merge == 0 and gw % merge == 0:
            return merge
    return int(getattr(settings, 'merge_size', 1) or 1)


def token_cells(geo: ImageGeometry, settings: PreprocessSettings, frame: tuple[int, int]):
    """``((cols, rows), note)`` of one-token cells over the frame, or ``(None, '')``."""
    extra = dict(geo.extra)
    if geo.grid is not None:
        t, gh, gw = geo.grid
        merge = merge_of(geo, settings)
        patch = frame[0] / gw
        note = f'patch grid {t} x {gh} x {gw}, patch {_num(patch)} px, merge {merge}'
        return (gw // merge, gh // merge), note
    if extra.get('token_cols') and extra.get('token_rows'):
        return (int(extra['token_cols']), int(extra['token_rows'])), 'token_cols x token_rows'
    return None, ''


def model_view(geo: ImageGeometry, settings: PreprocessSettings) -> ModelView:
    frame = frame_size(geo)
    content = (geo.pad_left, geo.pad_top, geo.resized_width, geo.resized_height)
    tiles = tile_size = global_size = None
    global_name = 'global view'
    if geo.tile_cols and geo.tile_rows:
        tiles = (geo.tile_cols, geo.tile_rows)
        tile_size = (frame[0] / geo.tile_cols, frame[1] / geo.tile_rows)
    if geo.global_width and geo.global_height:
        global_size = (geo.global_width, geo.global_height)
    elif geo.thumbnail and tile_size is not None:
        global_size, global_name = (round(tile_size[0]), round(tile_size[1])), 'thumbnail'
    cells, note = token_cells(geo, settings, frame)
    return ModelView(frame=frame, content=content, tiles=tiles, tile_size=tile_size, global_size=global_size,
                global_name=global_name, cells=cells, grid_note=note)


# --- the facts, printed and drawn -------------------------------------------------------------------
def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f'{value:.1f}'


def _short(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    keep = limit // 2
    return text if len(text) <= limit else f'{text[:keep]}...{text[-keep:]}'


def _size(width: float, height: float) -> str:
    return f'{_num(width)} x {_num(height)}'


def _pair(key: str, extra: dict) -> tuple[str, str, str] | None:
    """``(name, first, second)`` when ``key`` is half of an ``X_width``/``X_height`` or ``X_cols``/``X_rows`` pair."""
    for first, second in (('_width', '_height'), ('_cols', '_rows')):
        for mine, other in ((first, second), (second, first)):
            prefix = key[:-len(mine)]
            if key.endswith(mine) and prefix + other in extra:
                name = prefix.replace('_', ' ') + (' grid' if first == '_cols' else '')
                return name, prefix + first, prefix + second
    return None


def _extra_facts(extra: dict, used: set) -> list[tuple[str, str]]:
    """A family's ``extra`` facts, a width/height or cols/rows pair as one ``A x B`` line."""
    out = []
    for key, value in extra.items():
        if key in used:
            continue
        pair = _pair(key, extra)
        if pair is None:
            out.append((key.replace('_', ' '), str(value)))
            used.add(key)
        else:
            out.append((pair[0], _size(extra[pair[1]], extra[pair[2]])))
            used.update(pair[1:])
    return out


def facts(image: str, geo: ImageGeometry, settings: PreprocessSettings, view: ModelView,
          clamped: str | None = None, env: dict | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` lines: what the text output prints and the picture's header shows."""
    family, _ = family_of(settings.template)
    out = [('image', _short(image)), ('template', f'{settings.template} (family {settings.family})'),
           ('original', _size(geo.original_width, geo.original_height)),
           ('resized', _size(geo.resized_width, geo.resized_height))]
    if view.padded:
        out.append(('canvas', f'{_size(*view.frame)}, image at ({geo.pad_left}, {geo.pad_top})'))
    if view.tiles is not None:
        views = f'{geo.num_tiles} view' + ('s' if geo.num_tiles != 1 else '')
        glob = f' + {view.global_name} {_size(*view.global_size)}' if view.global_size else ''
        out.append(('tiles', f'{view.tiles[0]} x {view.tiles[1]} of {_size(*view.tile_size)}{glob} ({views})'))
    else:
        glob = f' + {view.global_name} {_size(*view.global_size)}' if view.global_size else ''
        out.append(('tiles', f'none{glob} ({geo.num_tiles} view' + ('s)' if geo.num_tiles != 1 else ')')))
    if view.cells is not None:
        cell = (view.frame[0] / view.cells[0], view.frame[1] / view.cells[1])
        out.append(('token grid', f'{view.cells[0]} x {view.cells[1]} cells of {_size(*cell)} px ({view.grid_note})'))
    out += _extra_facts(dict(geo.extra), {'canvas_width', 'canvas_height', 'token_cols', 'token_rows'})
    out.append(('visual tokens', str(geo.num_tokens)))
    if settings.swift_max_pixels:
        out.append(('--max_pixels', str(settings.swift_max_pixels)))
    env = os.environ if env is None else env
    set_vars = [f'{name}={env[name]}' for name in family.env_vars if env.get(name)]
    if set_vars:
        out.append(('environment', ', '.join(set_vars)))
    if clamped:  # the predict contract: 'max_pixels' = lost pixels on the way, 'min_pixels' = grown
        effect = {'max_pixels': 'the image was shrunk', 'min_pixels': 'the image was grown'}.get(clamped, 'reached')
        out.append(('limit', f'{clamped}: {effect}'))
    return out


def format_text(lines: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in lines) + 1
    return '\n'.join(f'{label + ":":<{width}} {value}' for label, value in lines)


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
    model = f'{what} {_size(*view.frame)}{shown}'
    glob = f'{view.global_name} {_size(*view.global_size)}' if view.global_size else None
    return model, glob


def legend_for(view: ModelView, step: int) -> tuple[tuple[tuple[int, int, int], str], ...]:
    items = []
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


def layout_for(view: ModelView, lines: Sequence[tuple[str, str]], font=None) -> Layout:
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
    legend_items = legend_for(view, cell_step(view, scale))
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


def render(image, geo: ImageGeometry, settings: PreprocessSettings, lines: Sequence[tuple[str, str]]):
    """The picture: facts, the model's frame (padding, content, tiles or token cells) and the global view."""
    from PIL import Image, ImageDraw
    font = load_font()
    view = model_view(geo, settings)
    lay = layout_for(view, lines, font)
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
    picture.paste(image.resize(content_box[2:], Image.Resampling.BICUBIC), content_box[:2])
    if view.cells is not None:
        draw_lines(draw, lay.model, view.cells, TOKEN_LINE, step=cell_step(view, s))
    if view.tiles is not None:
        draw_lines(draw, lay.model, view.tiles, TILE_LINE, width=TILE_LINE_WIDTH)
    if lay.global_view is not None:
        gx, gy, gw, gh = lay.global_view
        picture.paste(image.resize((gw, gh), Image.Resampling.BICUBIC), (gx, gy))
        draw.rectangle((gx - 2, gy - 2, gx + gw + 1, gy + gh + 1), outline=GLOBAL_LINE, width=2)
    lx, ly, items = lay.legend
    for colour, text in items:
        draw.rectangle((lx, ly + 3, lx + FONT_SIZE - 1, ly + 3 + FONT_SIZE - 1), fill=colour, outline=TEXT)
        draw.text((lx + LINE_HEIGHT, ly), text, fill=TEXT, font=font)
        lx += LINE_HEIGHT + _text_width(font, text) + GAP
    return picture


# --- input and output -------------------------------------------------------------------------------
def load_image(path: str, largest: tuple[int, int]):
    """The file's pixels as RGB (stored orientation, as ms-swift reads them), decoded no larger than needed."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.draft('RGB', largest)  # JPEG only: decode at a reduced scale still >= what is drawn
            return img.convert('RGB')
    except Exception as exc:  # PIL raises many types on a hostile or truncated file (struct.error, ...)
        raise ShowError(f'{path}: not a readable image ({type(exc).__name__}: {exc}).') from None


def check_out(out: str) -> str:
    """The PIL format for ``out``; refuses a missing folder, a folder as the file, an unknown extension."""
    from PIL import Image
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ShowError(f'--out {out!r}: its folder must exist, got {folder!r} which does not.')
    if os.path.isdir(out) and not os.path.islink(out):  # a link is replaced, whatever it points to
        raise ShowError(f'--out {out!r}: must be a file name, got a folder.')
    ext = os.path.splitext(out)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ShowError(f'--out {out!r}: the extension must be one PIL writes (.png, .jpg, ...), got {ext!r}.')
    return fmt


def write_image(picture, out: str, fmt: str) -> None:
    """Write ``picture`` to ``out`` without following a symlink already there.

    The bytes go to a new file created with O_EXCL (and O_NOFOLLOW) in the same folder, which
    is then renamed over ``out``: a rename replaces a symlink at ``out`` itself, never its target.
    """
    folder, base = os.path.split(os.path.abspath(out))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0)
    for _ in range(100):
        tmp = os.path.join(folder, f'.{base}.{secrets.token_hex(6)}.tmp')
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue
    else:
        raise ShowError(f'--out {out!r}: could not create a temporary file in {folder!r}.')
    try:
        with os.fdopen(fd, 'wb') as f:
            picture.save(f, format=fmt)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def show(image_path: str, template: str, *, out: str | None = None,
         swift_max_pixels: int | None = None) -> tuple[ImageGeometry, list[tuple[str, str]]]:
    """Predict ``image_path``'s geometry under ``template``; draw it to ``out`` when given."""
    settings = settings_for(template, swift_max_pixels=swift_max_pixels)
    fmt = check_out(out) if out is not None else None
    size = read_image_size(image_path)  # the header; the pixels are decoded only to draw
    geo, clamped = settings.predict(width=size[0], height=size[1], name=image_path)
    view = model_view(geo, settings)
    lines = facts(image_path, geo, settings, view, clamped)
    if out is not None:
        scale = view_scale(view)
        largest = [round(max(view.content[2], (view.global_size or (0, 0))[0]) * scale),
                   round(max(view.content[3], (view.global_size or (0, 0))[1]) * scale)]
        image = load_image(image_path, (max(1, largest[0]), max(1, largest[1])))
        write_image(render(image, geo, settings, lines), out, fmt)
    return geo, lines


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {value}')
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='swift-ext show', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='Environment variables ms-swift reads (MAX_PIXELS, MAX_NUM, ...) apply, as in '
                                       'training; `swift-ext templates` lists the templates.')
    p.add_argument('image', help='a local image file')
    p.add_argument('--template', required=True, help='a `_geo` template (or its parent) name')
    p.add_argument('--out', help='write the picture here (.png, .jpg, ...); its folder must exist')
    p.add_argument('--max_pixels', type=_positive_int, default=None,
                   help="ms-swift's own --max_pixels pre-rescale, as passed to swift")
    p.add_argument('--json', action='store_true', help='print the geometry dict as JSON')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        geo, lines = show(args.image, args.template, out=args.out, swift_max_pixels=args.max_pixels)
    except (GeometryError, ShowError, ValueError, OSError) as exc:
        print(f'swift-ext show: {exc}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(geo.to_dict(), indent=1))
    else:
        print(format_text(lines))
    if args.out is not None:
        print(f'wrote {args.out}', file=sys.stderr if args.json else sys.stdout)
    return 0

