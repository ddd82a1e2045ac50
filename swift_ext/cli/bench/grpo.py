"""Benchmark 4: tiny-model GRPO steps per second with and without swift-ext (ms-swift's own `rlhf_main`)."""
from __future__ import annotations

import contextlib
import gc
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator

from ..plugin_path import plugin_path
from . import Context, Figure, Goal
from .measure import env_vars
from .reward import regex_iou

GRPO_STEPS = (8, 3)  # per run; the first GRPO_WARMUP steps are not timed
GRPO_WARMUP = (2, 1)
GRPO_SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('portrait', 240, 320),
              ('wide', 600, 100), ('square', 224, 224))
STEP_FILE_ENV = 'SWIFT_EXT_BENCH_STEPS'


# --- 4. GRPO steps ------------------------------------------------------------------------------------------
PLUGIN_SOURCE = '''"""Written by `swift-ext bench`: a step timer and the regex IoU reward of the plain run."""
from swift_ext.cli.bench.grpo import register_bench_plugin

register_bench_plugin()
'''


def register_bench_plugin() -> None:
    """Register `bench_step_timer` (callback) and `bench_regex_iou` (reward) with ms-swift."""
    from swift.callbacks import callbacks_map
    from swift.rewards import ORM, orms
    from transformers import TrainerCallback

    class BenchStepTimer(TrainerCallback):
        """Appends wall and process CPU clocks at train begin and every step end to $SWIFT_EXT_BENCH_STEPS."""

        def __init__(self, args=None, trainer=None):
            self.path = os.environ[STEP_FILE_ENV]

        def _mark(self, step: int) -> None:
            with open(self.path, 'a') as f:
                f.write(f'{step} {time.perf_counter()!r} {time.process_time()!r}\n')

        def on_train_begin(self, args, state, control, **kwargs):
            self._mark(0)

        def on_step_end(self, args, state, control, **kwargs):
            self._mark(state.global_step)

    class RegexIoU(ORM):
        """`regex_iou` as a GRPO reward: the image's header for its size, smart_resize for the frame."""

        def __call__(self, completions, solution=None, images=None, **kwargs):
            from PIL import Image
            from qwen_vl_utils import smart_resize
            out = []
            for completion, sol, imgs in zip(completions, solution, images, strict=False):
                src = imgs[0]
                with Image.open(src['path'] if isinstance(src, dict) else src) as img:
                    width, height = img.size
                input_h, input_w = smart_resize(height, width, factor=28)
                out.append(regex_iou(completion, sol, input_width=input_w, input_height=input_h,
                                     image_width=width, image_height=height))
            return out

    callbacks_map['bench_step_timer'] = BenchStepTimer
    orms['bench_regex_iou'] = RegexIoU


def grpo_args(config: str, model: str, dataset: str, plugin: str, out: str, steps: int) -> list[str]:
    """The `swift rlhf` arguments of one run: config 'plain' or 'geo'."""
    common = ['--rlhf_type', 'grpo', '--model', model, '--model_type', 'qwen2_5_vl',
              '--dataset', dataset, '--num_generations', '2', '--per_device_train_batch_size', '4',
              '--max_completion_length', '16', '--max_steps', str(steps), '--tuner_type', 'lora',
              '--torch_dtype', 'float32', '--report_to', 'none', '--check_model', 'false',
              '--log_completions', 'true', '--output_dir', out, '--logging_steps', '1',
              '--save_strategy', 'no', '--dataloader_num_workers', '0', '--seed', '1',
              '--data_seed', '1']
    if config == 'plain':
        return common + ['--template', 'qwen2_5_vl', '--external_plugins', plugin,
                         '--reward_funcs', 'bench_regex_iou', 'format',
                         '--callbacks', 'bench_step_timer']
    return common + ['--template', 'qwen2_5_vl_geo', '--external_plugins',
                     plugin_path(), plugin,
                     '--reward_funcs', 'geo_iou', 'geo_format',
                     '--callbacks', 'geo_log', 'bench_step_timer']


def step_seconds(path: str, warmup: int) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of each step after the first ``warmup``, from the step timer's marks."""
    with open(path) as f:
        marks = [tuple(float(x) for x in line.split()[1:3]) for line in f if line.strip()]
    wall = [b[0] - a[0] for a, b in zip(marks, marks[1:], strict=False)][warmup:]
    cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:], strict=False)][warmup:]
    return wall, cpu


def run(ctx: Context) -> list[Figure]:
    from ...testing.images import make_dataset
    from ...testing.tiny import make_tiny_model

    model = make_tiny_model('qwen2_5_vl', os.path.join(ctx.work, 'tiny-qwen2_5_vl'))
    steps, warmup = ctx.size(GRPO_STEPS), ctx.size(GRPO_WARMUP)
    dataset = make_dataset(os.path.join(ctx.work, 'grpo_data'), sizes=GRPO_SIZES, repeat=steps)
    plugin = os.path.join(ctx.work, 'bench_plugin.py')
    with open(plugin, 'w') as f:
        f.write(PLUGIN_SOURCE)
    import torch
    wall: dict[str, list[float]] = {'plain': [], 'geo': []}
    cpu: dict[str, list[float]] = {'plain': [], 'geo': []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # so CPU time is the work done, not other load or spinning threads
    try:
        for r in range(ctx.rounds_for(4)):
            for config in (('plain', 'geo') if r % 2 == 0 else ('geo', 'plain')):
                w, c = _grpo_run(ctx, config, model, dataset, plugin, steps, warmup, r)
                wall[config].append(w)
                cpu[config].append(c)
    finally:
        torch.set_num_threads(threads)
    noise = max(cpu['plain']) / min(cpu['plain']) - 1
    wall_noise = max(wall['plain']) / min(wall['plain']) - 1
    ctx.note(4, f'{len(cpu["plain"])} in-process runs (`swift.rlhf_main`, the function behind '
                f'`swift rlhf`) of each configuration, alternating, torch 1 thread; {steps} steps per '
                f"run, the first {warmup} not timed; a run's figure is its median step time, "
                'measured between consecutive on_step_end calls (generation, rewards, logging and '
                'callbacks all count). 4 completions a step (2 prompts x 2 generations, 16 new '
                f'tokens), images {", ".join(f"{w}x{h}" for _, w, h in GRPO_SIZES)}. plain: template '
                'qwen2_5_vl, rewards bench_regex_iou + format; geo: qwen2_5_vl_geo, geo_iou + '
                f'geo_format, --callbacks geo_log. Noise = plain runs max/min - 1: wall {wall_noise:.1%}, '
                f'CPU {noise:.1%}; the goal is 1 + the wall noise (at least 2%)')
    ratio = lambda d: [g / p for p, g in zip(d['plain'], d['geo'], strict=False)]  # noqa: E731
    limit = 1 + max(wall_noise, 0.02)
    return [
        Figure(4, 'plain: steps per second', 'steps/s', [1 / s for s in wall['plain']]),
        Figure(4, 'geo: steps per second', 'steps/s', [1 / s for s in wall['geo']]),
        Figure(4, 'geo / plain step time, wall', 'ratio', ratio(wall),
               Goal('<=', limit, text=f'<= {limit:.3f} (1+noise)')),
        Figure(4, 'geo / plain step time, CPU', 'ratio', ratio(cpu))]


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'a') as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _grpo_run(ctx: Context, config: str, model: str, dataset: str, plugin: str, steps: int,
              warmup: int, r: int) -> tuple[float, float]:
    from swift import rlhf_main

    from ...runlog import ENV_DIR

    out = os.path.join(ctx.work, 'grpo_runs', f'{config}-{r}')
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    marks, log = os.path.join(out, 'steps.txt'), os.path.join(out, 'run.log')
    try:  # the geo_log callback sets ENV_DIR for its run; _env takes it away again after
        with env_vars(**{STEP_FILE_ENV: marks, ENV_DIR: None}), _output_to(log):
            rlhf_main(grpo_args(config, model, dataset, plugin, out, steps))
    except (Exception, SystemExit) as exc:
        raise RuntimeError(f'GRPO run {config}-{r} failed; its output is in {log}') from exc
    gc.collect()
    wall, cpu = step_seconds(marks, warmup)
    return statistics.median(wall), statistics.median(cpu)
