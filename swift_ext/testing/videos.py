"""Short generated videos whose frames carry their own index, so a test can tell which were sampled.

Every frame ``i`` shows, in its lower two thirds, ``i`` as a 16-bit code: a grid of 2 rows x 8
cells, white for a 1 bit and black for a 0, most significant bit first, left to right. The cells
are large (an eighth of the width, a third of the height) so the code survives H.264 / VP9 / MPEG-4
compression and the bicubic resize qwen-vl-utils applies; :func:`frame_index` reads it back from
decoded pixels. The upper third is coloured by the index and shows it as printed digits, for a
person looking at a contact sheet. Written with PyAV (a dependency of qwen-vl-utils), so no extra
package is needed.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

CODE_BITS = 16
CODE_ROWS = 2
CODE_COLS = CODE_BITS // CODE_ROWS
MAX_FRAMES = 2 ** CODE_BITS
WHITE, BLACK = 235, 16  # video-range luma: both survive yuv420p and limited-range conversion

# suffix -> (encoder, pixel format); each is in the FFmpeg build PyAV's wheel ships.
CODECS = {
    '.mp4': ('libx264', 'yuv420p'),
    '.mkv': ('libx264', 'yuv420p'),
    '.mov': ('libx264', 'yuv420p'),
    '.webm': ('libvpx-vp9', 'yuv420p'),
    '.avi': ('mpeg4', 'yuv420p'),
}


def _as_rate(fps: float | Fraction | str) -> Fraction:
    # A float such as 29.97 becomes 2997/100 exactly (not its binary expansion): what a person means.
    rate = Fraction(str(fps)) if isinstance(fps, float) else Fraction(fps)
    if rate <= 0:
        raise ValueError(f'`fps` must be positive, got {fps!r}.')
    return rate


def _colour(index: int) -> tuple[int, int, int]:
    # A hue per index, cycling every 12 frames: neighbours differ at a glance.
    hue = (index * 30) % 360
    sector, rest = divmod(hue, 60)
    up, down = 40 + rest * 3, 220 - rest * 3
    return [(220, up, 40), (down, 220, 40), (40, 220, up), (40, down, 220), (up, 40, 220), (220, 40, down)][sector]


def frame_image(index: int, *, width: int, height: int):
    """The PIL image of frame ``index``: coloured band with the printed index over the bit code."""
    from PIL import Image, ImageDraw
    if not 0 <= index < MAX_FRAMES:
        raise ValueError(f'`index` must be in [0, {MAX_FRAMES}), got {index}.')
    if width < CODE_COLS * 2 or height < 12:
        raise ValueError(f'frames must be at least {CODE_COLS * 2}x12 pixels, got {width}x{height}.')
    img = Image.new('RGB', (width, height), _colour(index))
    draw = ImageDraw.Draw(img)
    band = height // 3
    draw.text((2, max(0, band // 2 - 6)), str(index), fill=(0, 0, 0))
    for bit in range(CODE_BITS):
        row, col = divmod(bit, CODE_COLS)
        x0, x1 = col * width // CODE_COLS, (col + 1) * width // CODE_COLS
        y0 = band + row * (height - band) // CODE_ROWS
        y1 = band + (row + 1) * (height - band) // CODE_ROWS
        on = (index >> (CODE_BITS - 1 - bit)) & 1
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(WHITE,) * 3 if on else (BLACK,) * 3)
    return img


def frame_index(pixels: Any) -> int:
    """The index a generated frame carries, read from decoded pixels (HWC or CHW, any numeric type).

    Each cell is judged by the mean of its middle half, so blurred edges from compression or
    resizing do not matter.
    """
    import numpy as np
    arr = np.asarray(pixels, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f'a frame must have 3 dimensions (HWC or CHW), got shape {arr.shape}.')
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    luma = arr.mean(axis=2)
    height, width = luma.shape
    band = height / 3
    cell_w, cell_h = width / CODE_COLS, (height - band) / CODE_ROWS
    value = 0
    for bit in range(CODE_BITS):
        row, col = divmod(bit, CODE_COLS)
        x0, y0 = col * cell_w, band + row * cell_h
        rows = slice(int(y0 + cell_h / 4), int(y0 + 3 * cell_h / 4) + 1)
        patch = luma[rows, int(x0 + cell_w / 4):int(x0 + 3 * cell_w / 4) + 1]
        value = (value << 1) | int(patch.mean() > (WHITE + BLACK) / 2)
    return value


def make_video(path: str, *, num_frames: int, fps: float | Fraction | str = 30, width: int = 96,
               height: int = 72, codec: str | None = None) -> str:
    """Write a video of ``num_frames`` frames at a constant ``fps``; frame ``i`` carries ``i``.

    The duration is ``num_frames / fps`` seconds. ``codec`` overrides the encoder the suffix picks
    (see ``CODECS``); yuv420p needs even sides, so odd ``width`` / ``height`` are refused.
    """
    import av
    import numpy as np
    suffix = os.path.splitext(path)[1].lower()
    if codec is None:
        if suffix not in CODECS:
            raise ValueError(f'no encoder known for {suffix!r}: use one of {sorted(CODECS)} or pass `codec`.')
        codec, pix_fmt = CODECS[suffix]
    else:
        pix_fmt = 'yuv420p'
    if not 1 <= num_frames <= MAX_FRAMES:
        raise ValueError(f'`num_frames` must be in [1, {MAX_FRAMES}], got {num_frames}.')
    if width % 2 or height % 2:
        raise ValueError(f'{pix_fmt} needs even sides, got {width}x{height}.')
    rate = _as_rate(fps)
    with av.open(path, 'w') as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = 1 / rate
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(frame_image(index, width=width, height=height)),
                                               format='rgb24')
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_frame_images(out_dir: str, *, num_frames: int, width: int = 96, height: int = 72,
                      suffix: str = '.png') -> list[str]:
    """An image-list video: ``num_frames`` image files ``frame_00000.png`` ... carrying their index."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for index in range(num_frames):
        path = os.path.join(out_dir, f'frame_{index:05d}{suffix}')
        frame_image(index, width=width, height=height).save(path)
        paths.append(path)
    return paths


def sampled_indices(frames: Sequence[Any]) -> list[int]:
    """:func:`frame_index` of every frame of a decoded clip (a T x C x H x W tensor or a list of frames)."""
    return [frame_index(frame) for frame in frames]


# A temporal grounding prompt: the answer is the interval in seconds, as Time-R1-style datasets ask it.
PROMPT = ('<video>When is the frame index shown in white bits between {low} and {high}? '
          'Answer with the interval in seconds as <answer>start - end</answer>.')
# (name, frames, fps, width, height, chat_template_kwargs or None): short on purpose (a tiny e2e run).
DEMO_VIDEOS = (('whole', 30, 10, 64, 48, None),
               ('clip', 40, 10, 64, 48, {'video_start': 0.5, 'video_end': 3.5}),
               ('fast', 24, 8, 80, 48, {'fps': 4}))


def make_video_dataset(out_dir: str, *, videos: Sequence[tuple] = DEMO_VIDEOS, answer: bool = False) -> str:
    """Write ``video_grounding.jsonl`` over generated videos and return its path.

    Each row asks for the second third of its clip (the clip window where the row sets one), with
    ``solution`` = ``[start, end]`` in seconds of the source video; ``answer=True`` adds the exact answer
    as the assistant's reply (SFT rows).
    """
    import json
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for name, num_frames, fps, width, height, row_kwargs in videos:
        path = make_video(os.path.join(out_dir, f'{name}.mp4'), num_frames=num_frames, fps=fps, width=width,
                          height=height)
        duration = num_frames / fps
        start = (row_kwargs or {}).get('video_start', 0.0)
        end = (row_kwargs or {}).get('video_end', duration)
        solution = [round(start + (end - start) / 3, 2), round(start + 2 * (end - start) / 3, 2)]
        low, high = round(solution[0] * fps), round(solution[1] * fps)
        row = {'messages': [{'role': 'user', 'content': PROMPT.format(low=low, high=high)}], 'videos': [path],
               'solution': solution}
        if answer:
            row['messages'].append({'role': 'assistant', 'content': f'<answer>{solution[0]} - {solution[1]}</answer>'})
        if row_kwargs:
            row['chat_template_kwargs'] = dict(row_kwargs)
        rows.append(row)
    path = os.path.join(out_dir, 'video_grounding.jsonl')
    with open(path, 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in rows)
    return path
