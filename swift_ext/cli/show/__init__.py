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
Layers, imports running one way: ``view`` (the model's view, the facts) <- ``picture`` (layout and
drawing) <- ``command`` (reading the image, writing the picture, argparse).
"""
from .command import build_parser, main

__all__ = ['build_parser', 'main']
