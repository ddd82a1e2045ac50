"""`swift-ext show IMAGE --template T [--out FILE.png] [--box x1,y1,x2,y2] [--model DIR]`: draw what a `_geo`
template hands the model (and a box of the original image where the model sees it)."""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import warnings

from ...geometry import GeometryError, ImageGeometry
from ...images import read_image_header
from ..checkpoint import CheckpointError, tool_settings
from ..output import STDOUT, write_named
from ..text import ArgumentParser, echo
from .picture import render, view_scale
from .video import add_video_arguments, is_video, video_main
from .view import facts, format_text, model_view

MAX_DECODE_PIXELS = 64_000_000  # a file decoding to more is not drawn (its geometry is): 192 MB as RGB
JPEG_NAMES = ('.jpg', '.jpeg', '.jpe', '.jfif')  # decoded at a reduced scale (PIL's draft), so bounded anyway


class ShowError(ValueError):
    """An input `show` cannot use; the message names it, the rule and the value."""


# --- input and output -------------------------------------------------------------------------------
def load_image(path: str, size: tuple[int, int], largest: tuple[int, int]):
    """``(RGB pixels, None)`` decoded no larger than needed, or ``(None, why not)`` past ``MAX_DECODE_PIXELS``.

    Pixels are in their stored orientation, as ms-swift reads them. A JPEG decodes at a reduced
    scale still >= what is drawn (PIL's draft); other formats decode whole, so a file over the
    bound is not decoded at all: the picture shows the geometry over a placeholder.
    """
    from PIL import Image
    if not path.lower().endswith(JPEG_NAMES) and size[0] * size[1] > MAX_DECODE_PIXELS:
        return None, _too_large(size)
    try:
        with Image.open(path) as img:
            img.draft('RGB', largest)
            if img.width * img.height > MAX_DECODE_PIXELS:
                return None, _too_large(size)
            return img.convert('RGB'), None
    except Image.DecompressionBombError:
        return None, _too_large(size)
    except Exception as exc:  # PIL raises many types on a hostile or truncated file (struct.error, ...)
        raise ShowError(f'{path}: not a readable image ({type(exc).__name__}: {str(exc)[:200]}).') from None


def _too_large(size: tuple[int, int]) -> str:
    return (f'geometry only: pixels not drawn, the file is {size[0]} x {size[1]} '
            f'({size[0] * size[1] / 1e6:,.0f} MP), over the {MAX_DECODE_PIXELS / 1e6:.0f} MP drawing bound')


def check_out(out: str) -> str:
    """The PIL format for ``out`` (PNG for ``-``); refuses a missing folder, a folder, an unknown extension."""
    from PIL import Image
    if out == STDOUT:
        if sys.stdout.isatty():
            raise ShowError('--out -: standard output is a terminal; redirect it to a file (> shown.png).')
        return 'PNG'
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ShowError(f'--out {out!r}: its folder must exist, got {folder!r} which does not.')
    if os.path.isdir(out) and not os.path.islink(out):
        raise ShowError(f'--out {out!r}: must be a file name, got a folder.')
    ext = os.path.splitext(out)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ShowError(f'--out {out!r}: the extension must be one PIL writes (.png, .jpg, ...), got {ext!r}.')
    return fmt


def parse_box(text: str) -> list[float]:
    """``x1,y1,x2,y2`` (original pixels) as four numbers; the size check waits for the image (``check_box``)."""
    try:
        box = [float(v) for v in text.split(',')]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise argparse.ArgumentTypeError(f'must be four numbers x1,y1,x2,y2 (original pixels), got {text[:80]!r}')
    return box


def check_box(box: list[float], size: tuple[int, int]) -> None:
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]):
        raise ShowError(f'--box {",".join(f"{v:g}" for v in box)}: must satisfy 0 <= x1 < x2 <= width and '
                        f'0 <= y1 < y2 <= height in the original {size[0]} x {size[1]} pixels (as stored).')


def box_facts(box: list[float], geo: ImageGeometry, settings, orientation: int) -> list[tuple[str, str]]:
    """The box in original pixels, in the model's pixel frame, and as the template's convention writes it."""
    def fmt(values):
        return '[' + ', '.join(f'{round(v, 4):g}' for v in values) + ']'
    fw, fh = geo.frame_size
    out = [('box (original)', f'{fmt(box)} px of {geo.original_width} x {geo.original_height}'),
           ('box (model frame)', f'{fmt(geo.to_model_frame(box, "abs"))} px of {fw} x {fh}')]
    if settings.coords != 'abs':
        out.append((f'box ({settings.coords})', fmt(geo.to_model_frame(box, settings.coords))))
    if orientation != 1:
        out.append(('EXIF orientation', f'{orientation}: a viewer shows this image rotated or mirrored; ms-swift and '
                                        'the model read the stored pixels, so --box is in the stored frame, as drawn'))
    return out


def show(image_path: str, template: str, *, out: str | None = None, swift_max_pixels: int | None = None,
         box: list[float] | None = None, model: str | None = None) -> tuple[ImageGeometry, list[tuple[str, str]]]:
    """Predict ``image_path``'s geometry under ``template`` (a checkpoint's settings with ``model``); draw it to
    ``out`` when given (``-``: stdout), with ``box`` (original pixels) where the model sees it."""
    settings, source = tool_settings(template, model, swift_max_pixels=swift_max_pixels)
    fmt = check_out(out) if out is not None else None
    from PIL import Image
    with warnings.catch_warnings():  # PIL's bomb warning: the decode below is bounded by MAX_DECODE_PIXELS
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        return _show(image_path, settings, out, fmt, box, model)


def _show(image_path: str, settings, out: str | None, fmt: str | None, box: list[float] | None, model: str | None):
    header = read_image_header(image_path)  # the header; the pixels are decoded only to draw
    size = (header.width, header.height)
    if box is not None:
        check_box(box, size)
    geo, clamped = settings.predict(width=size[0], height=size[1], name=image_path)
    view = model_view(geo, settings)
    lines = facts(image_path, geo, settings, view, clamped, model=model)
    if box is not None:
        lines += box_facts(box, geo, settings, header.orientation)
    elif header.orientation != 1:
        lines.append(('EXIF orientation', f'{header.orientation}: a viewer shows this image rotated or mirrored; '
                                          'ms-swift and the model read the stored pixels, as drawn'))
    if out is not None:
        scale = view_scale(view)
        largest = [round(max(view.content[2], (view.global_size or (0, 0))[0]) * scale),
                   round(max(view.content[3], (view.global_size or (0, 0))[1]) * scale)]
        image, why = load_image(image_path, size, (max(1, largest[0]), max(1, largest[1])))
        if why:
            lines.append(('drawn', why))
        buffer = io.BytesIO()
        render(image, geo, settings, lines, box=None if box is None else geo.to_model_frame(box, 'abs')).save(
            buffer, format=fmt)
        write_named(out, buffer.getvalue(), option='--out')
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
    p = ArgumentParser(prog='swift-ext show', description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='Environment variables ms-swift reads (MAX_PIXELS, MAX_NUM, ...) apply, as in '
                                       'training; `swift-ext templates` lists the templates.')
    p.add_argument('image', help='a local image file, or a video file (a contact sheet of the frames sampled)')
    p.add_argument('--template', required=True, help='a `_geo` template (or its parent) name')
    p.add_argument('--out', help="write the picture here (.png, .jpg, ...; its folder must exist), or '-' for a PNG "
                   'on standard output; an existing file must be a regular file')
    p.add_argument('--max_pixels', type=_positive_int, default=None,
                   help="ms-swift's own --max_pixels pre-rescale, as passed to swift")
    p.add_argument('--box', type=parse_box, metavar='x1,y1,x2,y2',
                   help='a box in original pixels: drawn where the model sees it, its model-frame coordinates printed')
    p.add_argument('--model', metavar='DIR', help='a local checkpoint (or its processor config): its settings as the '
                   'live template reads them (default: built-in defaults)')
    p.add_argument('--json', action='store_true', help='print the geometry dict as JSON (with --box: and the box)')
    add_video_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    to_stdout = args.out == STDOUT
    if to_stdout and args.json:
        echo('swift-ext show: --out - and --json both write to standard output; choose one.', err=True)
        return 2
    if is_video(args.image):
        return video_main(args, check_out)
    try:
        geo, lines = show(args.image, args.template, out=args.out, swift_max_pixels=args.max_pixels,
                          box=args.box, model=args.model)
    except (GeometryError, ShowError, CheckpointError, ValueError, OSError) as exc:
        echo(f'swift-ext show: {exc}', err=True)
        return 2
    if args.json:
        d = geo.to_dict()
        if args.box is not None:
            d['box'] = {'original': args.box, 'model_frame': geo.to_model_frame(args.box, 'abs')}
        echo(json.dumps(d, indent=1))
    else:
        echo(format_text(lines), err=to_stdout)  # with --out -, standard output holds the picture
    if args.out is not None and not to_stdout:
        echo(f'wrote {args.out}', err=args.json)
    return 0
