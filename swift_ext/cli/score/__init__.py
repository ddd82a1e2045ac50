"""`swift-ext score RESULT.jsonl --template T`: grounding metrics of `swift infer` results, in original pixels.

Reads the file ``swift infer --result_path`` writes (one row per sample: ``response``, and the
dataset's columns: ``images``, ``solution`` or ms-swift's grounding ``objects``,
``chat_template_kwargs``, ...). Each predicted box is read in the template's coordinate
convention, mapped to the original image with the geometry the template gives that file
(``settings_for``: ``--max_pixels`` as ms-swift's flag, ``MAX_PIXELS`` / ``MAX_NUM`` / ... from
the environment, the row's ``chat_template_kwargs``), exactly as the `geo_iou` reward does.

Reported: mean IoU (first predicted box against the first true box, the referring-expression
convention, 0 when no box was parsed), Acc@0.5 and Acc@0.75 of that IoU, the matched score of
all boxes (``swift_ext.scoring.iou_score``, the reward's value), rows with no parseable box, and
the same per visual-token bucket and per original-size bucket. ``--html`` adds the rollout
gallery; ``--json`` prints the numbers, with each row's IoU (``per_row``, the first rows);
``--rows FILE`` writes every row's record as it is scored.

The image scored is the one the row's truth belongs to (``image_index``, ``swift_ext.truth``), read
as ms-swift reads it (``swift_ext.images``: paths, dicts, base64, data URLs); an in-memory image is
named by its ``sha1:`` identity, never by its payload. The settings the inference recorded beside the
result file are compared with those used to score, and each difference is named (``recorded``).

Ground truth: ``solution`` in original pixels (any form ``scoring.parse_solution`` reads), else
``objects`` = ``{"ref": [...], "bbox": [[x1, y1, x2, y2], ...], "bbox_type": "real" | "norm1",
"image_id": [...]}`` (ms-swift's grounding format; points and boxes of other images than the row's
``image_index`` are left out).

The file is streamed (memory does not grow with rows); a malformed row is counted and named
by its row number, never fatal. Exit codes: 0 scored; 2 the file, the template, the output or
the ``--dataset`` join is unusable.

``--dataset DATA`` supplies the ``solution`` that `swift infer` drops: by the ``id`` column where
the result rows carry one (``truth``), else row by row, and then only when both files have the same
number of rows and no dataset line was skipped (a skipped line would shift every later row).

Layers, imports running one way: ``rows`` (one row) and ``truth`` (``--dataset``) <- ``aggregate``
(the file) <- ``report`` (text and page) <- ``command`` (argparse); ``recorded`` (the inference's
settings) <- ``command``.
"""
from .command import build_parser, main

__all__ = ['build_parser', 'main']
