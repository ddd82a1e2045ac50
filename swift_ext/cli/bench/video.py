"""Benchmark 6: video geometry from a file's header vs `fetch_video` decoding it; `plan` on 10,000 videos.

The header path is what `plan`, `show` and the rewards' fallback run: ``read_video_header`` (an MP4 /
MOV track's ``moov`` box read in Python, other containers' header by PyAV; no frame decoded) and
``predict_video_geometry`` (arithmetic). The decode path is what ms-swift's Qwen templates run to
learn the same numbers: ``qwen_vl_utils.fetch_video`` (the reader picks and decodes the sampled
frames, then resizes them). Both run side by side in one process, interleaved, on the same files;
each round also checks that both give the same frame count and frame size.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sys

from . import Context, Figure, Goal
from .measure import interleaved
from .scale import run_measured

# (name, seconds, fps, width, height): (full, quick)
SHORT_CLIPS = ((('3s', 3, 30, 640, 360), ('5s', 5, 30, 640, 360), ('10s', 10, 30, 640, 360),
                ('5s_720p', 5, 30, 1280, 720)),
               (('3s', 3, 10, 160, 96),))
LONG_CLIP = (('60s', 60, 30, 640, 360), ('60s', 60, 5, 160, 96))
# Containers whose header PyAV reads (an MP4 / MOV track is read from its moov box: swift_ext.mp4_header).
OTHER_CLIPS = ((('5s', 5, 30, 640, 360, '.mkv'), ('5s', 5, 30, 640, 360, '.webm')),
               (('3s', 3, 10, 160, 96, '.mkv'),))
HEADER_REPEATS = (50, 3)  # header passes per round (one is ~0.5 ms, too short to time alone)
PLAN_VIDEOS = (10_000, 200)
PLAN_POOL = 20  # distinct generated videos behind the plan's files (each file its own path)


def make_clips(folder: str, clips) -> list[str]:
    """Generated videos (frame ``i`` carries ``i``), reused when the workdir already holds them."""
    from ...testing.videos import make_video
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, seconds, fps, width, height, *suffix in clips:
        suffix = suffix[0] if suffix else '.mp4'
        path = os.path.join(folder, f'{name}_{fps}fps_{width}x{height}{suffix}')
        if not os.path.exists(path):
            make_video(path + '.part' + suffix, num_frames=seconds * fps, fps=fps, width=width, height=height)
            os.replace(path + '.part' + suffix, path)
        paths.append(path)
    return paths


def write_video_dataset(folder: str, videos: int, seed: int = 0) -> str:
    """``videos`` video files (hard links to, else copies of, ``PLAN_POOL`` generated clips of 2-120 s,
    each under its own path so no header is read twice) and a dataset with one video per row; one row
    in 10 clips a window, one in 10 sets its own fps."""
    rng = random.Random(seed)
    pool = make_clips(os.path.join(folder, 'pool'), [(f'p{i}', rng.randint(2, 120), rng.choice((10, 24, 25, 30)),
                                                      rng.choice((64, 96, 128)), rng.choice((48, 64, 96)))
                                                     for i in range(PLAN_POOL)])
    rows = []
    for i in range(videos):
        sub = os.path.join(folder, f'{i // 1000:03d}')
        os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, f'{i}.mp4')
        if not os.path.exists(path):
            try:
                os.link(pool[i % len(pool)], path)
            except OSError:
                shutil.copyfile(pool[i % len(pool)], path)
        row = {'messages': [{'role': 'user', 'content': '<video>When does it happen?'}], 'videos': [path],
               'solution': [1.0, 2.0]}
        if i % 10 == 3:
            row['chat_template_kwargs'] = {'video_start': 0.5, 'video_end': 1.5}
        elif i % 10 == 7:
            row['chat_template_kwargs'] = {'fps': 1.0}
        rows.append(json.dumps(row))
    dataset = os.path.join(folder, 'videos.jsonl')
    with open(dataset, 'w') as f:
        f.write('\n'.join(rows) + '\n')
    return dataset


def header_vs_decode(ctx: Context, paths: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds per video of each path, per round: ``header`` (read + predict) and ``decode`` (fetch_video)."""
    from qwen_vl_utils import fetch_video

    from ...video import predict_video_geometry, video_settings
    from ...video_io import read_video_header
    settings = video_settings(patch_size=14)

    def header():
        for _ in range(repeats):
            for path in paths:
                h = read_video_header(path)
                predict_video_geometry(width=h.width, height=h.height, total_frames=h.total_frames,
                                       video_fps=h.video_fps, settings=settings)

    def decode():
        for path in paths:
            fetch_video({'video': path}, return_video_sample_fps=True)

    for path in paths:  # the same answer both ways, and every import and first-call cache warm
        h = read_video_header(path)
        geo = predict_video_geometry(width=h.width, height=h.height, total_frames=h.total_frames,
                                     video_fps=h.video_fps, settings=settings)
        video, _ = fetch_video({'video': path}, return_video_sample_fps=True)
        t, _, height, width = video.shape
        if (t, width, height) != (geo.num_frames, geo.resized_width, geo.resized_height):
            ctx.fail(6, f'{path}: fetch_video gave {t} frames of {width}x{height}, the header '
                        f'{geo.num_frames} of {geo.resized_width}x{geo.resized_height}')
    times = interleaved({'header': header, 'decode': decode}, ctx.rounds_for(6))
    n = len(paths)
    return {'header': [t / (n * repeats) for t in times['header']], 'decode': [t / n for t in times['decode']]}


def run(ctx: Context) -> list[Figure]:
    from ...video_io import video_backend
    short = make_clips(os.path.join(ctx.work, 'video_clips'), ctx.size(SHORT_CLIPS))
    long = make_clips(os.path.join(ctx.work, 'video_clips'), [ctx.size(LONG_CLIP)])
    other = make_clips(os.path.join(ctx.work, 'video_clips'), ctx.size(OTHER_CLIPS))
    repeats = ctx.size(HEADER_REPEATS)
    figures = []
    for label, paths, goal in (('short clips', short, Goal('>=', 1000)), ('60 s clip', long, Goal('>=', 1000)),
                               ('MKV / WebM (PyAV header)', other, Goal('>=', 1000))):
        s = header_vs_decode(ctx, paths, repeats)
        figures += [
            Figure(6, f'video header + predict, {label}', 'us/video', [t * 1e6 for t in s['header']]),
            Figure(6, f'fetch_video (decode + resize), {label}', 'ms/video', [t * 1e3 for t in s['decode']]),
            Figure(6, f'fetch_video / header, {label}', 'speed-up',
                   [d / h for d, h in zip(s['decode'], s['header'], strict=True)], goal)]
    videos = ctx.size(PLAN_VIDEOS)
    folder = os.path.join(ctx.work, f'plan_videos_{videos}')
    dataset = os.path.join(folder, 'videos.jsonl')
    if not os.path.exists(dataset):
        dataset = write_video_dataset(folder, videos)
    cmd = [sys.executable, '-m', 'swift_ext.cli', 'plan', dataset, '--template', 'qwen2_5_vl_geo', '--json']
    plan = [run_measured(cmd, os.path.join(ctx.work, 'plan_videos.log')) for _ in range(ctx.rounds_for(6))]
    figures += [Figure(6, f'plan {videos:,} videos: wall', 's', [w for w, _ in plan], Goal('<', 60)),
                Figure(6, f'plan {videos:,} videos: throughput', 'videos/s', [videos / w for w, _ in plan])]
    clips = ', '.join(_clip(c) for c in ctx.size(SHORT_CLIPS))
    others = ', '.join(f'{_clip(c)} {c[5][1:].upper()}' for c in ctx.size(OTHER_CLIPS))
    ctx.note(6, f'short clips: {clips}; long: {_clip(ctx.size(LONG_CLIP))}; MKV / WebM: {others} (their header '
                'read by PyAV; MP4 / MOV by swift_ext.mp4_header); '
                'made by swift_ext.testing.videos (H.264; VP9 for WebM); '
                f'reader {video_backend()}, the one fetch_video uses; '
                'qwen2_5_vl defaults (FPS 2, VIDEO_MAX_TOKEN_NUM 768); the page cache holds the files. '
                f'plan: {videos:,} files, each its own path (hard links to {PLAN_POOL} generated clips of '
                f'2-120 s), one video per row, 1 row in 10 clipped, 1 in 10 at fps 1, --workers '
                f'{os.cpu_count()} (default); wall time includes interpreter start-up')
    return figures


def _clip(clip: tuple) -> str:
    _, seconds, fps, width, height = clip[:5]
    return f'{seconds} s {width}x{height} at {fps} fps'
