"""`swift-ext plan DATASET --template NAME`: what a template will do to a dataset's images.

Reads only image headers (``images.read_image_header``) in worker processes and predicts each
image's geometry with the template's settings (``settings.settings_for(...).predict``) — the
same arithmetic the `_geo` templates check themselves against — so a dataset can be sized
before training. Images are found as ms-swift finds them (``swift_ext.images``).

Contract: a row that cannot be planned (not JSON, a malformed ``chat_template_kwargs``, an
image that is missing, unreadable or of a form ms-swift refuses) is reported with its row
number and the plan goes on; a worker process that dies (out of memory, killed) ends the plan
with exit status 3 within seconds, naming the rows it was reading.

Layers, imports running one way: ``dataset`` (rows, shared with `check`) <- ``stats`` (sums) <-
``work`` (a chunk of rows, in a worker) <- ``run`` (the pool) <- ``report`` (presentation) <-
``command`` (argparse).
"""
from .command import build_parser, main

__all__ = ['build_parser', 'main']
