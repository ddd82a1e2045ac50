"""Gallery cards, shared by `review` (rollouts) and `score` (predictions): one image with its boxes.

Each card is one completion drawn on its ORIGINAL image: the ground-truth box(es) in green, the
predicted box(es) mapped back to original pixels (``ImageGeometry.from_model_frame`` with the
template's coordinate convention) in red, the tiles of a tiling family as faint blue lines, and
beside it the IoU, step, visual tokens, resized size and the completion text (escaped).
Thumbnails are JPEG, embedded in the one HTML page up to a total byte bound; past the bound the
page says how many were left out. ``draw_gallery`` draws every card once (the summary holds the
result); ``gallery_html`` only places what was drawn.
"""
from __future__ import annotations

import argparse
import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..boxes import parse_boxes
from ..geometry import ImageGeometry
from ..images import read_image_size
from ..scoring import iou_score, parse_solution
from .bounded import refuse_reason, short
from .page import esc

THUMB_SIDE = 360
MIN_SIDE = 240
MAX_TEXT_SHOWN = 2000  # characters of a completion shown
MAX_DRAW_PIXELS = 64_000_000  # larger images are not decoded for a thumbnail
GT_COLOR = (26, 152, 80)
PRED_COLOR = (215, 48, 31)
TILE_COLOR = (40, 90, 220, 90)

MAX_GALLERY_MB = 1024.0  # --gallery-max-mb above this is refused: a page is opened in a browser


def gallery_mb(text: str) -> float:
    """``--gallery-max-mb``: a finite number of megabytes in (0, ``MAX_GALLERY_MB``] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number of megabytes, got {text[:40]!r}') from None
    if not 0 < value <= MAX_GALLERY_MB:  # NaN fails too
        raise argparse.ArgumentTypeError(f'must be more than 0 and at most {MAX_GALLERY_MB:g}, got {text[:40]!r}')
    return value


CSS = """.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px;background:#fff}
.card img{max-width:100%;display:block;margin-bottom:6px;border:1px solid #eee}
.card .missing{background:#f6f0f0;color:#8a1f11;padding:28px 10px;text-align:center;border:1px dashed #d9a}
.card pre{white-space:pre-wrap;word-break:break-word;max-height:180px;overflow:auto;font-size:12px}
.card table td,.card table th{font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;margin:0 3px 0 8px;vertical-align:middle}"""


# --- one item ---------------------------------------------------------------------------------------------
@dataclass
class Item:
    """Everything one gallery card shows."""

    reasons: list[str]
    completion: str
    step: int | None = None
    image_key: str | None = None  # a path, 'sha1:...' or a URL
    image_bytes: bytes | None = None  # an in-line image (score reads them from the result file)
    geometry: ImageGeometry | None = None
    coords: str | None = None
    solution: Any = None
    rewards: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    row_label: str = ''
    withheld: str | None = None  # why the image file may not be embedded (``embed``), where it may not
    matched_by: str | None = None  # how review found the row's image (``review.gallery.MATCHED``)

    @property
    def gt_boxes(self) -> list[list[float]] | None:
        return parse_solution(self.solution) if self.solution is not None else None

    @property
    def pred_boxes(self) -> list[list[float]]:
        """Predicted boxes in original pixels (unclipped), or [] when the frame is unknown."""
        if self.geometry is None or self.coords is None:
            return []
        out = []
        for box in parse_boxes(self.completion):
            mapped = self.geometry.from_model_frame(box, self.coords)
            if all(math.isfinite(v) for v in mapped):
                out.append(mapped)
        return out

    @property
    def iou(self) -> float | None:
        if self.geometry is None or self.coords is None:
            return None
        return iou_score(self.completion, self.solution, self.geometry, self.coords)

    def summary(self, notes: Sequence[str] = ()) -> dict:
        g = self.geometry
        return {'step': self.step, 'reasons': self.reasons, 'image': self.image_key, 'iou': self.iou,
                'visual_tokens': g.num_tokens if g else None,
                'resized': f'{g.resized_width}x{g.resized_height}' if g else None,
                'original': f'{g.original_width}x{g.original_height}' if g else None,
                'gt_boxes': self.gt_boxes, 'pred_boxes': self.pred_boxes, 'notes': [*self.notes, *notes]}



# --- drawing ---------------------------------------------------------------------------------------------
def _load(item: Item):
    """The item's image as a small RGB PIL image, or (None, why not)."""
    from PIL import Image
    if item.withheld:
        return None, item.withheld
    if item.image_bytes is not None:
        source: Any = io.BytesIO(item.image_bytes)
        size_source: Any = item.image_bytes
    else:
        key = item.image_key
        if not key:
            return None, 'image not identified'
        if key.startswith('sha1:'):
            return None, f'image given in-line ({short(key, 40)}); not kept in the log, not drawn'
        if '://' in key:
            return None, f'remote image ({short(key, 80)}); not fetched'
        reason = refuse_reason(key)
        if reason == 'missing':
            return None, f'image file missing: {short(key, 160)}'
        if reason:
            return None, f'image file {short(key, 160)}: {reason}'
        source = size_source = key
    try:
        width, height = read_image_size(size_source)
        if width * height > MAX_DRAW_PIXELS:
            return None, f'image is {width}x{height}, too large to draw a thumbnail of'
        with Image.open(source) as img:
            img.draft('RGB', (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at a reduced scale
            img = img.convert('RGB')
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            if max(img.size) < MIN_SIDE:  # a 50x60 image is drawn large enough to see its boxes
                k = MIN_SIDE / max(img.size)
                img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.NEAREST)
            # The header's size, never the drafted decode's (a 900x1600 JPEG decodes at 450x800).
            return (img, (width, height)), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # The type only: PIL's messages can quote the file's first bytes, which the page must not carry.
        return None, f'image unreadable ({type(exc).__name__})'



def draw(item: Item) -> tuple[bytes | None, str | None, list[str]]:
    """JPEG bytes of the item's thumbnail with its boxes and tiles (or None, why not), and notes on it."""
    from PIL import Image, ImageDraw
    loaded, why = _load(item)
    if loaded is None:
        return None, why, []
    img, (file_w, file_h) = loaded
    g = item.geometry
    notes = []
    frame_w, frame_h = (g.original_width, g.original_height) if g else (file_w, file_h)
    if g and (file_w, file_h) != (frame_w, frame_h):
        notes.append(f'the file is {file_w}x{file_h} now; the log says {frame_w}x{frame_h}')
    sx, sy = img.width / frame_w, img.height / frame_h

    def scaled(box):
        x1, y1, x2, y2 = box
        x1, x2 = sorted((x1 * sx, x2 * sx))
        y1, y2 = sorted((y1 * sy, y2 * sy))
        lim = 4 * THUMB_SIDE  # far outside the image: clip so PIL draws a visible edge
        return [max(-lim, min(lim, v)) for v in (x1, y1, x2, y2)]

    overlay = Image.new('RGBA', img.size, (0, 0, 0, 0))
    faint = ImageDraw.Draw(overlay)
    for line in tile_lines(g) if g else []:
        faint.line([(line[0] * sx, line[1] * sy), (line[2] * sx, line[3] * sy)], fill=TILE_COLOR, width=1)
    img = Image.alpha_composite(img.convert('RGBA'), overlay).convert('RGB')
    pen = ImageDraw.Draw(img)
    for box in item.gt_boxes or []:
        pen.rectangle(scaled(box), outline=GT_COLOR, width=3)
    for box in item.pred_boxes:
        x1, y1, x2, y2 = scaled(box)
        if x2 - x1 < 1 and y2 - y1 < 1:
            x2, y2 = x1 + 1, y1 + 1
        pen.rectangle([x1, y1, x2, y2], outline=PRED_COLOR, width=2)
    out = io.BytesIO()
    img.save(out, format='JPEG', quality=80)
    return out.getvalue(), None, notes



def tile_lines(g: ImageGeometry) -> list[tuple[float, float, float, float]]:
    """Tile borders in original pixels: the model frame cut in ``tile_cols`` x ``tile_rows``.

    The frame is the canvas where a family pads (LLaVA-NeXT), else the resized image; its
    lines are mapped back with ``from_model_frame``, so padding and scale are honoured.
    """
    cols, rows = g.tile_cols, g.tile_rows
    if not cols or not rows or cols * rows <= 1 or cols > 64 or rows > 64:
        return []
    fw, fh = g.frame_size
    out = []
    for k in range(1, cols):
        x = fw * k / cols
        x1, y1, x2, y2 = g.from_model_frame([x, 0, x, fh], 'abs')
        out.append((x1, max(y1, 0), x2, min(y2, g.original_height)))
    for k in range(1, rows):
        y = fh * k / rows
        x1, y1, x2, y2 = g.from_model_frame([0, y, fw, y], 'abs')
        out.append((max(x1, 0), y1, min(x2, g.original_width), y2))
    return out


# --- the gallery ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Card:
    """One drawn item: its thumbnail (None when not embedded), why not, and notes the drawing added."""

    item: Item
    jpeg: bytes | None
    why_not: str | None
    notes: tuple[str, ...] = ()

    def summary(self) -> dict:
        return self.item.summary(self.notes)


@dataclass(frozen=True)
class Gallery:
    """Every card drawn, and how many thumbnails the byte bound let in."""

    cards: tuple[Card, ...]
    max_bytes: int
    embedded: int
    left_out: int  # drawn, but past the byte bound
    bytes: int
    withheld: int = 0  # image files not embedded: not under a confirmed folder (``embed``)
    confirmed: tuple[str, ...] = ()  # where image files may come from, as the page says
    notes: tuple[str, ...] = ()

    def summary(self) -> list[dict]:
        return [c.summary() for c in self.cards]

    def counts(self) -> dict:
        return {'embedded': self.embedded, 'left_out': self.left_out, 'bytes': self.bytes,
                'withheld': self.withheld, 'confirmed_folders': list(self.confirmed), 'notes': list(self.notes)}


def draw_gallery(items: Sequence[Item], max_bytes: int, confirmed: Sequence[str] = (),
                 notes: Sequence[str] = ()) -> Gallery:
    """Draw each item; thumbnails are kept while their data URLs fit ``max_bytes`` in all."""
    cards, used, left_out, embedded = [], 0, 0, 0
    for item in items:
        data, why, drawn_notes = draw(item)  # not `notes`: the gallery's own notes are kept for the page
        if data is not None:
            size = len(_data_url(data))
            if used + size > max_bytes:
                left_out += 1
                data, why = None, f"image left out: the gallery's bound of {max_bytes / (1 << 20):.1f} MB is reached"
            else:
                used += size
                embedded += 1
        cards.append(Card(item, data, None if data is not None else (why or 'no image'), tuple(drawn_notes)))
    withheld = sum(1 for item in items if item.withheld)
    return Gallery(tuple(cards), max_bytes, embedded, left_out, used, withheld, tuple(confirmed), tuple(notes))


def _data_url(jpeg: bytes) -> str:
    return 'data:image/jpeg;base64,' + base64.b64encode(jpeg).decode()


def _fmt(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.3f}'
    return str(value)


def gallery_html(gallery: Gallery, title: str = 'Rollouts') -> str:
    """The gallery section of a page."""
    cards = []
    for c in gallery.cards:
        figure = (f'<img alt="rollout image" src="{_data_url(c.jpeg)}">' if c.jpeg is not None
                  else f'<div class="missing">{esc(c.why_not)}</div>')
        cards.append(_card(c.item, figure, c.notes))
    note = ''
    if gallery.left_out:
        note = (f'<p class="warn">{gallery.left_out} of {len(gallery.cards)} image(s) left out to keep the embedded '
                f'images under {gallery.max_bytes / (1 << 20):.1f} MB (--gallery-max-mb).</p>')
    if gallery.withheld:
        note += (f'<p class="warn">{gallery.withheld} of {len(gallery.cards)} image file(s) not embedded: they lie '
                 'outside the confirmed folders (--images-under DIR adds one).</p>')
    if gallery.confirmed:
        note += f'<p>Image files are embedded only from: {esc("; ".join(gallery.confirmed))}.</p>'
    note += ''.join(f'<p class="warn">{esc(n)}</p>' for n in gallery.notes)
    legend = (f'<p><span class="swatch" style="background:rgb{GT_COLOR}"></span>ground truth'
              f'<span class="swatch" style="background:rgb{PRED_COLOR}"></span>predicted, in original pixels'
              f'<span class="swatch" style="background:rgb{TILE_COLOR[:3]};opacity:.5"></span>tiles</p>')
    return (f'<h2 id="gallery">{esc(title)}</h2>{legend}{note}'
            f'<div class="gallery">{"".join(cards)}</div>')


def _card(item: Item, figure: str, drawn_notes: Sequence[str]) -> str:
    g = item.geometry
    facts = [('IoU', _fmt(item.iou)), ('step', _fmt(item.step))]
    if item.row_label:
        facts.append(('row', item.row_label))
    if g:
        facts += [('visual tokens', f'{g.num_tokens:,}'), ('resized', f'{g.resized_width}x{g.resized_height}'),
                  ('original', f'{g.original_width}x{g.original_height}')]
        if g.tile_cols:
            facts.append(('tiles', f'{g.tile_cols}x{g.tile_rows}' + (' + thumbnail' if g.thumbnail else '')))
    facts += [(name, _fmt(v)) for name, v in list(item.rewards.items())[:6]]
    facts.append(('chosen as', '; '.join(item.reasons)))
    gt, pred = item.gt_boxes, item.pred_boxes
    facts.append(('boxes', f'{len(gt) if gt else 0} true, {len(pred)} predicted'))
    if item.image_key:
        facts.append(('image', short(item.image_key, 90)))
    rows = ''.join(f'<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in facts)
    notes = ''.join(f'<p class="warn">{esc(n)}</p>' for n in [*item.notes, *drawn_notes])
    text = item.completion
    more = f'\n... ({len(text) - MAX_TEXT_SHOWN:,} more characters)' if len(text) > MAX_TEXT_SHOWN else ''
    return (f'<div class="card">{figure}<table>{rows}</table>{notes}'
            f'<pre>{esc(text[:MAX_TEXT_SHOWN] + more)}</pre></div>')

