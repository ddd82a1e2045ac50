"""A small grounding dataset of generated images: one red box per image, its box as ground truth."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

# (name, width, height): tiny, landscape, portrait, extreme-but-legal aspect, large.
DEMO_SIZES: tuple[tuple[str, int, int], ...] = (
    ('tiny', 50, 60),
    ('landscape', 640, 480),
    ('portrait', 300, 500),
    ('wide', 1000, 40),
    ('large', 1280, 960),
    ('square', 448, 448),
)
# The demo gives its largest image a per-row limit, to show chat_template_kwargs at work.
DEMO_ROW_MAX_PIXELS = {'large': 200704}
PROMPT = ('<image>Locate the red box in the image and output its bbox coordinates in JSON '
          'format, like [{"bbox_2d": [x1, y1, x2, y2], "label": "red box"}].')


def box_for(width: int, height: int) -> list[int]:
    """Where the generated image's red box is, in original pixels."""
    return [width // 5, height // 4, (3 * width) // 5, (3 * height) // 4]


def make_images(out_dir: str, sizes: Sequence[tuple[str, int, int]] = DEMO_SIZES) -> dict[str, str]:
    from PIL import Image, ImageDraw
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, width, height in sizes:
        path = os.path.join(out_dir, f'{name}_{width}x{height}.png')
        if not os.path.exists(path):
            img = Image.new('RGB', (width, height), (230, 230, 230))
            ImageDraw.Draw(img).rectangle(box_for(width, height), fill=(220, 30, 30))
            img.save(path)
        paths[name] = path
    return paths


def make_dataset(out_dir: str, *, sizes: Sequence[tuple[str, int, int]] = DEMO_SIZES,
                 repeat: int = 1, row_max_pixels: dict[str, int] | None = None) -> str:
    """Write ``grounding.jsonl`` (GRPO rows: user prompt, image, solution) and return its path.

    ``row_max_pixels`` gives some images a per-row ``chat_template_kwargs`` limit.
    """
    paths = make_images(os.path.join(out_dir, 'images'), sizes)
    rows = []
    for _ in range(repeat):
        for name, width, height in sizes:
            row = {'messages': [{'role': 'user', 'content': PROMPT}], 'images': [paths[name]],
                   'solution': box_for(width, height)}
            if row_max_pixels and name in row_max_pixels:
                row['chat_template_kwargs'] = {'max_pixels': row_max_pixels[name]}
            rows.append(row)
    path = os.path.join(out_dir, 'grounding.jsonl')
    with open(path, 'w') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')
    return path
