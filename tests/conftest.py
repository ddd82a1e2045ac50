"""Shared fixtures: tiny local checkpoints and small generated images.

Nothing here downloads anything: the hub is switched off before any test module imports
transformers or swift, and every model is built locally by ``swift_ext.testing.tiny``.
Fixtures stay generic; add new ones below the existing ones.
"""
import os

# Offline before transformers / swift / modelscope are imported by any test module.
for _name, _value in {
        'HF_HUB_OFFLINE': '1',
        'TRANSFORMERS_OFFLINE': '1',
        'HF_DATASETS_OFFLINE': '1',
        'MODELSCOPE_OFFLINE': '1',
        'USE_HF': '1',
}.items():
    os.environ.setdefault(_name, _value)

import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import pytest  # noqa: E402

INHERITED_LOG_ENV = ('SWIFT_EXT_GEO_LOG_DIR', 'SWIFT_EXT_GEO_LOG_CHANNEL', 'SWIFT_EXT_ROLE')


@pytest.fixture(autouse=True)
def _restore_environ():
    """Put os.environ back after each test: swift_ext names the run folder in it (publish_log_dir) as the
    geo_log callback does in a real run, and that must not reach the next test or the runs it starts.

    Each test also starts without a geometry-log folder, channel or role, as a user's shell does: one left
    by anything outside a test's own scope (a fixture of a wider scope, a straggling thread) would send
    the lines of a `swift` run the test starts to that folder instead of its own."""
    for name in INHERITED_LOG_ENV:
        os.environ.pop(name, None)
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


# name -> (width, height, file suffix). 'wide' is 7.5:1, well inside Qwen's 200:1 limit.
SAMPLE_IMAGE_SIZES = {
    'tiny': (50, 60, 'png'),
    'landscape': (640, 480, 'jpg'),
    'portrait': (300, 500, 'png'),
    'wide': (900, 120, 'jpg'),
    'square': (448, 448, 'png'),
}


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory) -> Callable[[str], str]:
    """Factory: ``tiny_model(family) -> checkpoint dir``, each family built once per session.

    Families are those of ``swift_ext.testing.tiny.parents()``. The returned directory is
    shared by every test of the session: read it, never write into it.
    """
    from swift_ext.testing.tiny import make_tiny_model

    root = tmp_path_factory.mktemp('tiny_models')
    built: dict[str, str] = {}

    def factory(family: str) -> str:
        if family not in built:
            built[family] = make_tiny_model(family, str(root / family))
        return built[family]

    return factory


@pytest.fixture(scope='module')
def tiny_processor(tiny_model) -> Callable[[str], object]:
    """Factory: ``tiny_processor(parent) -> processor`` of ``parent``'s tiny checkpoint, as ms-swift's
    ``get_processor`` loads it with the model type ``run_flags`` names; loaded once per test module (a test that
    changes it puts it back)."""
    from swift.model import get_processor

    from swift_ext.testing.tiny import run_flags
    cache = {}

    def get(parent: str):
        if parent not in cache:
            cache[parent] = get_processor(tiny_model(parent), model_type=run_flags(parent)['model_type'])
        return cache[parent]
    return get


@pytest.fixture(scope='session')
def sample_images(tmp_path_factory) -> dict[str, str]:
    """``{name: path}`` of small generated images: see ``SAMPLE_IMAGE_SIZES`` for sizes.

    Each holds a red rectangle outlined in blue on a grey background, so no image is blank.
    """
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp('sample_images')
    paths = {}
    for name, (width, height, suffix) in SAMPLE_IMAGE_SIZES.items():
        image = Image.new('RGB', (width, height), (200, 200, 200))
        box = (width // 4, height // 4, (3 * width) // 4, (3 * height) // 4)
        ImageDraw.Draw(image).rectangle(box, fill=(220, 30, 30), outline=(20, 40, 200),
                                        width=max(1, width // 100))
        path = root / f'{name}.{suffix}'
        image.save(path)
        paths[name] = str(path)
    return paths


# --- end-to-end helpers ----------------------------------------------------------------------------
class E2E:
    """What the e2e tests share: paths, running `swift` / `swift-ext`, reading a run folder, processes."""

    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    PLUGIN = os.path.join(ROOT, 'templates', 'plugin.py')  # the file users pass
    PROBE = os.path.join(ROOT, 'tests', 'e2e', 'plugins', 'probe.py')  # PLUGIN + a reward that records
    BIN = os.path.dirname(sys.executable)
    SWIFT = os.path.join(BIN, 'swift')
    SWIFT_EXT = os.path.join(BIN, 'swift-ext')
    TIMEOUT = 600  # seconds, per CLI run
    GENERATIONS = 2  # GRPO completions per prompt

    def run(self, cmd, *, env=None, check=True, timeout=TIMEOUT) -> subprocess.CompletedProcess:
        """Run a command from the repository root; with ``check``, fail showing its traceback.

        The result also carries ``seconds`` and ``peak_rss_kb`` / ``peak_rss_exact`` (see :meth:`usage`).
        """
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        # A geometry-log folder or channel left in this process's environment (a unit test in the same
        # pytest worker) would send the run's lines, and the sample ms-swift encodes before training,
        # to that folder: each run names its own, as a user's shell does.
        clean = {k: v for k, v in os.environ.items() if k not in INHERITED_LOG_ENV}
        proc = subprocess.run(cmd, cwd=self.ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**clean, **(env or {})})
        proc.seconds = time.perf_counter() - start
        # The largest child (with its waited-for descendants) of this process so far, in KiB: this run's own
        # peak only when it grew; else this run stayed at most at an earlier run's peak.
        proc.peak_rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc.peak_rss_exact = proc.peak_rss_kb > before
        if check:
            assert proc.returncode == 0, (proc.returncode, self.traceback(proc.stdout + proc.stderr))
        return proc

    @staticmethod
    def usage(proc: subprocess.CompletedProcess) -> str:
        """'41.2 s, peak RSS 2048 MB' for a process of :meth:`run`: to print, never to assert (machines vary)."""
        bound = '' if proc.peak_rss_exact else '<= '
        return f'{proc.seconds:.1f} s, peak RSS {bound}{proc.peak_rss_kb / 1024:.0f} MB'

    def swift(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return self.run([self.SWIFT, *args], **kwargs)

    def swift_ext(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return self.run([self.SWIFT_EXT, *args], **kwargs)

    def train_args(self, model: str, parent: str, data: str, out: str, *, steps: int = 1, plugins=None,
                   callbacks=('geo_log',), extra=()) -> list:
        """The flags every tiny `swift sft` / `swift rlhf` run shares, for ``steps`` steps on a tiny ``parent``.

        ``extra`` comes last, so a flag given again there wins (argparse keeps the last value).
        """
        from swift_ext.testing.tiny import run_flags
        flags = run_flags(parent)
        args = ['--model', model, '--model_type', flags['model_type'], '--template', flags['template'],
                '--external_plugins', *(plugins or [self.PROBE]), '--dataset', data, '--max_steps', str(steps),
                '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none', '--check_model', 'false',
                '--output_dir', out, '--logging_steps', '1', '--save_strategy', 'no', '--dataloader_num_workers', '0',
                '--seed', '1']
        if callbacks:
            args += ['--callbacks', *callbacks]
        return args + list(extra)

    def grpo_args(self, model: str, parent: str, data: str, out: str, *, batch: int,
                  rewards=('geo_iou', 'geo_format', 'geo_probe'), **kwargs) -> list:
        """`swift rlhf --rlhf_type grpo` arguments (see :meth:`train_args` for the rest).

        ``batch`` is ``--per_device_train_batch_size``, which GRPO counts in completions: a step takes
        ``batch // GENERATIONS`` prompts (GRPO's gradient accumulation defaults to 1).
        """
        return ['rlhf', '--rlhf_type', 'grpo', '--reward_funcs', *rewards, '--num_generations', str(self.GENERATIONS),
                '--per_device_train_batch_size', str(batch), '--max_completion_length', '8',
                '--log_completions', 'true', *self.train_args(model, parent, data, out, **kwargs)]

    def grpo(self, model: str, parent: str, data: str, out_dir, *, batch: int, env=None, check=True, **kwargs):
        """GRPO (one step unless ``steps=``) with the probe reward: ``(probe lines, process, newest run folder)``.

        With ``check=False`` a failed run is returned too, for tests of a known upstream failure.
        """
        out_dir = str(out_dir)
        probe = os.path.join(out_dir, 'probe.jsonl')
        os.makedirs(out_dir, exist_ok=True)
        proc = self.swift(*self.grpo_args(model, parent, data, os.path.join(out_dir, 'out'), batch=batch, **kwargs),
                          env={'GEO_PROBE_OUT': probe, **(env or {})}, check=check)
        lines = self.read_lines(probe) if os.path.exists(probe) else []
        return lines, proc, self.run_dirs(os.path.join(out_dir, 'out'))[-1]

    @staticmethod
    def dataset(out_dir, sizes, *, fields=None, answer=None) -> str:
        """``make_dataset``'s grounding rows over ``sizes``, rewritten in place; returns the file.

        ``fields``: ``{image name: {key: value}}`` added to that image's row (``chat_template_kwargs``).
        ``answer(row)``: the assistant's reply appended to each row's messages (SFT rows).
        """
        from swift_ext.testing.images import make_dataset
        path = make_dataset(str(out_dir), sizes=sizes)
        rows = E2E.read_lines(path)
        for row, (name, _, _) in zip(rows, sizes, strict=True):
            row.update((fields or {}).get(name, {}))
            if answer:
                row['messages'].append({'role': 'assistant', 'content': answer(row)})
        with open(path, 'w') as f:
            f.writelines(json.dumps(row) + '\n' for row in rows)
        return path

    @staticmethod
    def traceback(text: str, limit: int | None = 4000) -> str:
        """The last traceback in ``text`` (its last ``limit`` characters; None: all of it), else its end."""
        i = text.rfind('Traceback')
        if i < 0:
            return text[-3000:]
        return text[i:] if limit is None else text[i:][-limit:]

    @staticmethod
    def run_dirs(out: str) -> list:
        """The `v<N>-<timestamp>` folders ms-swift made under --output_dir, oldest first."""
        found = [os.path.join(out, d) for d in os.listdir(out) if d.startswith('v')] if os.path.isdir(out) else []
        return sorted(found, key=lambda d: int(os.path.basename(d)[1:].split('-')[0]))

    @staticmethod
    def read_lines(path: str) -> list:
        """Every line of a JSON-lines file; each must be whole (newline-ended) and parse."""
        with open(path, 'rb') as f:
            data = f.read()
        assert not data or data.endswith(b'\n'), f'{path}: last line is not complete'
        return [json.loads(x) for x in data.splitlines() if x.strip()]

    @staticmethod
    def geometry_log(run_dir: str) -> list:
        """The records `--callbacks geo_log` wrote for rank 0 in ``run_dir``."""
        return E2E.read_lines(os.path.join(run_dir, 'image_geometry.jsonl'))

    @staticmethod
    def group_alive(pgid: int) -> list:
        """Pids (not zombies) still in process group ``pgid``."""
        alive = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open(f'/proc/{pid}/stat') as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(')') + 2:].split()  # state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] != 'Z':
                alive.append(int(pid))
        return alive


@pytest.fixture(scope='session')
def e2e() -> E2E:
    """The shared e2e helpers (see :class:`E2E`)."""
    return E2E()


@pytest.fixture()
def log_dir(tmp_path, monkeypatch):
    """A run folder the geometry log writes to (rank 0), with this process's recorder empty before and after."""
    from swift_ext import runlog
    from swift_ext.recorder import recorder
    from swift_ext.warn import reset_warnings
    d = tmp_path / 'run'
    recorder().flush()
    monkeypatch.setenv(runlog.ENV_DIR, str(d))
    monkeypatch.delenv('RANK', raising=False)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    reset_warnings()
    yield d
    recorder().flush()
    for key in [k for k in runlog.STATE.fds if k[1].startswith(str(tmp_path))]:
        os.close(runlog.STATE.fds.pop(key))


# --- test tiers ------------------------------------------------------------------------------------
# Every test has exactly one tier (registered in pyproject.toml; tests/unit/test_tiers.py checks):
#   pure  in-process arithmetic and files: no checkpoint, no child process; `pytest -m pure` runs in seconds;
#   tiny  builds or loads a tiny checkpoint (requests `tiny_model`, directly or through a fixture), or starts
#         a process (a `swift-ext` command, a fork): minutes;
#   e2e   tests/e2e: real `swift` / `swift-ext` runs on tiny checkpoints in subprocesses.
# The tier comes from where the test lives and what it requests, so a new test is marked without effort;
# a test that builds a model or starts a process another way says `@pytest.mark.tiny` itself, and a `pure`
# test that starts one anyway fails, saying so (`_pure_starts_no_process`).
TIERS = ('pure', 'tiny', 'e2e')
TINY_FIXTURES = frozenset({'tiny_model'})
# Tests that request no checkpoint yet are `tiny`: they sweep for many seconds (over 2 s on the 2-core test machine)
# or start processes. A node id starting with one of these; a `pure` test that starts a process fails anyway.
TINY_TESTS = (
    'tests/unit/test_bench.py::TestQuickRun::',  # `swift-ext bench --quick` on tiny checkpoints, a subprocess
    'tests/unit/test_family_internvl.py::test_internvl_tiles_match_ms_swift',  # 2,000 examples against ms-swift
    'tests/unit/test_family_internvl.py::test_internvl_hf_grid_matches_transformers',  # 1,500 examples
    'tests/unit/test_family_internvl.py::test_internvl_real_tiling',
    'tests/unit/test_family_internvl.py::test_grid_order_is_ms_swifts_',  # grids for a MAX_NUM of thousands
    'tests/unit/test_family_phi4_multimodal.py::test_dynamic_preprocess_parity',
    'tests/unit/test_video_sampling.py::test_frame_range_and_count_parity',
    'tests/unit/test_video_sampling.py::test_frame_size_parity_with_fetch_video',
    'tests/unit/test_video_sampling.py::test_frame_indices_equal_torch_linspace',
    'tests/unit/test_video_files.py::test_sampled_frames_are_the_predicted_ones',
    'tests/unit/test_fast_paths.py::test_pixtral_grids_equal_the_token_loop',
    'tests/unit/test_fast_paths.py::test_token_spans_equal_the_loop_whatever_the_hint',
    'tests/unit/test_fast_paths.py::test_gemma4_patch_extents_equal_the_full_max_whatever_the_hint',
    'tests/unit/test_bench.py::TestHelpers::test_interleaving_alternates_order',
    'tests/unit/test_family_qwen3_5.py::test_row_limits_and_swift_prerescale_match_the_libraries',
    'tests/unit/test_family_qwen.py::test_transformers_grid',
    'tests/unit/test_family_qwen.py::test_smart_resize_parity',
    'tests/unit/test_family_deepseek_vl2.py::test_pad_layout_is_pillows_imageops_pad',
    'tests/unit/test_family_glm4v.py::test_glm5_next_content_matches_the_real_resize',
    'tests/unit/test_bench_video.py::test_plan_dataset_has_a_path_per_video',  # encodes clips of up to 120 s: 23 s
    # They start processes (a `swift-ext` command, python -c, a fork):
    'tests/unit/test_callback_unit.py::test_each_step_counts_the_images_of_the_batches_it_trained_on',
    'tests/unit/test_check.py::TestUnreadableInput::test_cli_exit_2',
    'tests/unit/test_cli.py::test_plugin_path_is_the_packaged_plugin',
    'tests/unit/test_cli.py::test_templates_json_lists_every_registered_template',
    'tests/unit/test_cli.py::test_unknown_command_and_closed_pipe_print_no_traceback',
    'tests/unit/test_geometry.py::test_import_is_light',
    'tests/unit/test_scoring.py::test_import_is_light',
    'tests/unit/test_hostile_plan.py::test_a_killed_worker_is_an_error_not_a_hang',
    'tests/unit/test_hostile_plan.py::test_every_bad_row_is_named_and_good_rows_plan',
    'tests/unit/test_hostile_runlog.py::test_fork_',
    'tests/unit/test_plan.py::test_workers_give_the_same_numbers',
    'tests/unit/test_readme.py::test_plan_output_in_readme',
    'tests/unit/test_recorder.py::test_a_forked_child_writes_its_own_encodes_at_exit_and_not_its_parents',
    'tests/unit/test_recorder.py::test_a_worker_',
    'tests/unit/test_recorder.py::test_fingerprints_are_the_same_in_every_process',
    'tests/unit/test_recorder.py::test_forks_under_two_busy_threads_never_hang',
)
E2E_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'e2e')


def tier_of(item) -> str:
    """The tier a test gets when it names none: e2e by folder, tiny by fixture, else pure."""
    if str(item.path).startswith(E2E_DIR + os.sep):
        return 'e2e'
    if TINY_FIXTURES & set(getattr(item, 'fixturenames', ())) or item.nodeid.startswith(TINY_TESTS):
        return 'tiny'
    return 'pure'


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by these marks
def pytest_collection_modifyitems(config, items):
    config.collected_before_selection = [item.nodeid for item in items]  # for tests/unit/test_tiers.py
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(tier_of(item))


@pytest.fixture(autouse=True, scope='session')
def _matplotlib_font_cache():
    """matplotlib's font cache, built once before any test: on a machine without one, its first use runs
    `fc-list`, which a `pure` test that plots (review) would be refused, depending on which test came first."""
    import matplotlib.font_manager  # noqa: F401  (building the cache is what the import does)


@pytest.fixture(autouse=True)
def _pure_starts_no_process(request, monkeypatch):
    """In a `pure` test, starting a process (subprocess, fork) raises, naming the tier the test belongs to."""
    if request.node.get_closest_marker('pure') is None:
        return

    def refuse(*args, **kwargs):
        raise RuntimeError(f'{request.node.nodeid}: a `pure` test starts no process; mark it '
                           '`@pytest.mark.tiny` (see the tiers in tests/conftest.py)')
    import _posixsubprocess  # what subprocess (its own reference) and multiprocessing's spawn start a child with
    monkeypatch.setattr(_posixsubprocess, 'fork_exec', refuse)
    monkeypatch.setattr(subprocess, '_fork_exec', refuse)
    for name in ('fork', 'forkpty', 'posix_spawn', 'posix_spawnp'):
        monkeypatch.setattr(os, name, refuse)
