"""`swift-ext check`: trainer and rollout preprocessing compared, setting by setting.

`swift rollout` cannot start on these machines (ms-swift imports vLLM at module load:
"ModuleNotFoundError: No module named 'vllm'"), so the sides are separate Python processes
that each build the `qwen2_5_vl_geo` template from the tiny checkpoint, as a `swift rollout`
/ `swift rlhf` process does when it loads the plugin, each with its own settings.
Library-version differences are tested on written records.
"""
import doctest
import json
import logging
import os
import subprocess
import sys

import pytest

from swift_ext import runlog
from swift_ext.cli import check as drift
from swift_ext.settings import default_settings

# What a `swift rollout` / `swift rlhf` process does with the plugin: load the processor
# (ms-swift applies MAX_PIXELS to qwen-vl-utils there) and build the template (`--max_pixels`).
# Importing swift costs ~8 s of CPU a process, so one launcher imports it once and forks a
# process per side; each sets its own environment before anything reads a setting (MAX_PIXELS
# is read when the processor loads, the role and log directory when the template logs).
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'programs', 'check_sides.py')
SETTINGS_ENV = ('MAX_PIXELS', 'MIN_PIXELS', 'MAX_NUM', runlog.ENV_DIR, runlog.ENV_ROLE)


@pytest.fixture(scope='module')
def sides(tiny_model, tmp_path_factory):
    """Four processes: the trainer and three rollout sides, each with its own settings.

    The trainer and the MAX_PIXELS rollout share one log directory, as when both are given
    the same SWIFT_EXT_GEO_LOG_DIR; every process's stdout and stderr are kept as its log.
    """
    model = tiny_model('qwen2_5_vl')
    root = tmp_path_factory.mktemp('drift')
    shared = root / 'shared'
    specs = {  # name: (log dir, extra environment, template --max_pixels)
        'trainer': (shared, {}, None),
        'rollout_env': (shared, {'SWIFT_EXT_ROLE': 'rollout', 'MAX_PIXELS': '50176'}, None),
        'rollout_flag': (root / 'rollout_flag', {'SWIFT_EXT_ROLE': 'rollout'}, 100352),
        'rollout_same': (root / 'rollout_same', {'SWIFT_EXT_ROLE': 'rollout'}, None),
    }
    launch = {name: {'log': str(root / f'{name}.log'), 'max_pixels': max_pixels,
                     'env': {runlog.ENV_DIR: str(log_dir), **env}}
              for name, (log_dir, env, max_pixels) in specs.items()}
    proc = subprocess.run([sys.executable, LAUNCHER, model, json.dumps(launch)],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k not in SETTINGS_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert not result['failed'], {n: (root / f'{n}.log').read_text()[-3000:]
                                  for n in result['failed']}
    out = {name: str(root / f'{name}.log') for name in specs}
    out.update(root=str(root), shared=str(shared / runlog.SETTINGS_FILE),
               rollout_flag_dir=str(root / 'rollout_flag'),
               rollout_same_dir=str(root / 'rollout_same'))
    out['pid'] = result['pids']
    out['fp'] = {name: drift.load_fingerprints(out[name])[-1]['fingerprint'] for name in specs}
    return out


def run_check(argv, capsys):
    rc = drift.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def listing(sides, *rows):
    """The first lines of the report: (label, process name, source) per side."""
    return [f'{label}: qwen2_5_vl_geo fingerprint {sides["fp"][name]} '
            f'(pid {sides["pid"][name]}; {source})' for label, name, source in rows]


# --- two processes started with different settings ------------------------------------------
class TestTwoProcesses:
    def test_max_pixels_env_on_one_side_shared_directory(self, sides, capsys):
        # Both wrote to one geometry_settings.jsonl: a single argument compares the roles in it.
        rc, out, _ = run_check([os.path.dirname(sides['shared'])], capsys)
        assert rc == 1
        assert out.splitlines() == listing(
            sides, ('trainer', 'trainer', sides['shared']),
            ('rollout', 'rollout_env', sides['shared'])
        ) + ['preprocessing differs between trainer and rollout (1 setting):',
             '  max_pixels: trainer 12845056, rollout 50176']

    def test_max_pixels_env_from_captured_logs(self, sides, capsys):
        # The processes' own output, as `swift rollout ... 2>&1 | tee rollout.log` keeps it.
        rc, out, _ = run_check([sides['trainer'], sides['rollout_env']], capsys)
        assert rc == 1
        assert out.splitlines() == listing(
            sides, ('trainer', 'trainer', sides['trainer']),
            ('rollout', 'rollout_env', sides['rollout_env'])
        ) + ['preprocessing differs between trainer and rollout (1 setting):',
             '  max_pixels: trainer 12845056, rollout 50176']

    def test_template_max_pixels_on_one_side(self, sides, capsys):
        # `--max_pixels` is ms-swift's own pre-rescale, distinct from qwen-vl-utils' limit.
        flag_file = os.path.join(sides['rollout_flag_dir'], runlog.SETTINGS_FILE)
        rc, out, _ = run_check([sides['trainer'], sides['rollout_flag_dir']], capsys)
        assert rc == 1
        assert out.splitlines() == listing(
            sides, ('trainer', 'trainer', sides['trainer']), ('rollout', 'rollout_flag', flag_file)
        ) + ['preprocessing differs between trainer and rollout (1 setting):',
             '  swift_max_pixels: trainer unset, rollout 100352']

    def test_same_settings_agree(self, sides, capsys):
        same_file = os.path.join(sides['rollout_same_dir'], runlog.SETTINGS_FILE)
        rc, out, _ = run_check([sides['trainer'], sides['rollout_same_dir']], capsys)
        assert rc == 0
        assert sides['fp']['trainer'] == sides['fp']['rollout_same']
        assert out.splitlines() == listing(
            sides, ('trainer', 'trainer', sides['trainer']), ('rollout', 'rollout_same', same_file)
        ) + [f'same preprocessing (fingerprint {sides["fp"]["trainer"]})']

    def test_several_rollout_sides_each_compared(self, sides, capsys):
        rc, out, _ = run_check([sides['trainer'], sides['rollout_same'], sides['rollout_flag']],
                               capsys)
        same, flag = (f'rollout (pid {sides["pid"][n]})' for n in ('rollout_same', 'rollout_flag'))
        assert rc == 1
        assert out.splitlines()[3:] == [
            f'{same}: same preprocessing as trainer',
            f'preprocessing differs between trainer and {flag} (1 setting):',
            f'  swift_max_pixels: trainer unset, {flag} 100352']

    @pytest.mark.parametrize('args, rc', [
        (['trainer', 'rollout_env'], 1),
        (['trainer', 'rollout_same'], 0),
    ])
    def test_cli_exit_status(self, sides, args, rc):
        proc = subprocess.run([sys.executable, '-m', 'swift_ext.cli', 'check',
                               *(sides[a] for a in args)], capture_output=True, text=True)
        assert proc.returncode == rc, proc.stderr
        assert ('same preprocessing' in proc.stdout) == (rc == 0)

    def test_json_report(self, sides, capsys):
        rc, out, _ = run_check([os.path.dirname(sides['shared']), '--json'], capsys)
        report = json.loads(out)
        assert rc == 1 and report['same'] is False and report['fingerprint'] is None
        assert [v['label'] for v in report['variants']] == ['trainer', 'rollout']
        assert report['comparisons'] == [{
            'a': 'trainer', 'b': 'rollout', 'same': False,
            'fingerprints': [sides['fp']['trainer'], sides['fp']['rollout_env']],
            'templates': ['qwen2_5_vl_geo', 'qwen2_5_vl_geo'],
            'differences': {'max_pixels': [12845056, 50176]}}]


# --- compare() on written settings ------------------------------------------------------------
QWEN = default_settings('qwen2_5_vl_geo').to_dict()


def with_versions(settings, **versions):
    return {**settings, 'versions': {**settings.get('versions', {}), **versions}}


QWEN_V = with_versions(QWEN, **{'ms-swift': '4.6.0', 'qwen-vl-utils': '0.0.14'})

COMPARE_CASES = [
    # (id, a, b, expected differences)
    ('identical', QWEN_V, dict(QWEN_V), {}),
    ('qwen_vl_utils_version', QWEN_V, with_versions(QWEN_V, **{'qwen-vl-utils': '0.0.11'}),
     {'versions.qwen-vl-utils': ['0.0.14', '0.0.11']}),
    ('library_missing_on_one_side', QWEN_V, with_versions(QWEN_V, **{'qwen-vl-utils': None}),
     {'versions.qwen-vl-utils': ['0.0.14', None]}),
    ('max_pixels', QWEN, default_settings('qwen2_5_vl_geo', max_pixels=50176).to_dict(),
     {'max_pixels': [None, 50176]}),
    ('internvl_max_num', default_settings('internvl3_5_geo').to_dict(),
     default_settings('internvl3_5_geo', max_num=6).to_dict(), {'max_num': [12, 6]}),
    # Only the name differs: the same pixels, so the same preprocessing.
    ('template_name_only', default_settings('internvl2_5_geo').to_dict(),
     default_settings('internvl3_5_geo').to_dict(), {}),
]


class TestCompare:
    @pytest.mark.parametrize('a, b, expected', [c[1:] for c in COMPARE_CASES],
                             ids=[c[0] for c in COMPARE_CASES])
    def test_differences(self, a, b, expected):
        result = drift.compare(a, b)
        assert result['differences'] == expected
        assert result['same'] == (not expected)

    def test_accepts_records_and_keeps_their_fingerprints(self):
        a = {'fingerprint': 'aaaa', 'settings': QWEN}
        b = {'fingerprint': 'bbbb', 'settings': QWEN}
        assert drift.compare(a, b) == {'same': True, 'fingerprints': ['aaaa', 'bbbb'],
                                       'templates': ['qwen2_5_vl_geo'] * 2, 'differences': {}}

    def test_fingerprint_computed_for_bare_settings(self):
        fp = default_settings('qwen2_5_vl_geo').fingerprint()
        assert drift.compare(QWEN, QWEN)['fingerprints'] == [fp, fp]

    def test_doctest(self):
        assert doctest.testmod(drift).failed == 0


# --- reading and the CLI on written files -------------------------------------------------------
def record(settings, role='trainer', pid=1, rank=0):
    """A geometry_settings.jsonl line as runlog.log_settings writes it."""
    fp = drift._fingerprint(settings)
    return json.dumps({'role': role, 'rank': rank, 'pid': pid, 'fingerprint': fp,
                       'settings': settings, 'time': 0.0}) + '\n'


def write(path, *lines):
    path.write_text(''.join(lines))
    return str(path)


class TestVersionsInTheReport:
    def test_library_version_line(self, tmp_path, capsys):
        old = with_versions(QWEN_V, **{'qwen-vl-utils': '0.0.11'})
        trainer = write(tmp_path / 't.jsonl', record(QWEN_V))
        rollout = write(tmp_path / 'r.jsonl', record(old, role='rollout', pid=2))
        rc, out, _ = run_check([trainer, rollout], capsys)
        assert rc == 1
        assert out.splitlines()[-2:] == [
            'preprocessing differs between trainer and rollout (1 setting):',
            '  versions.qwen-vl-utils: trainer 0.0.14, rollout 0.0.11']

    def test_missing_library_reads_not_installed(self, tmp_path, capsys):
        gone = with_versions(QWEN_V, **{'qwen-vl-utils': None})
        path = write(tmp_path / 'g.jsonl', record(QWEN_V), record(gone, role='rollout', pid=2))
        rc, out, _ = run_check([path], capsys)
        assert rc == 1
        assert out.splitlines()[-1] == ('  versions.qwen-vl-utils: trainer 0.0.14, '
                                        'rollout not installed')


class TestLoading:
    def test_log_line_written_by_runlog_reads_back(self, tmp_path, caplog, monkeypatch):
        monkeypatch.setenv(runlog.ENV_ROLE, 'rollout')
        monkeypatch.delenv(runlog.ENV_DIR, raising=False)
        settings = default_settings('qwen2_5_vl_geo', max_pixels=50176)
        with caplog.at_level(logging.INFO, logger='swift_ext.runlog'):
            runlog.log_settings(settings)
        path = write(tmp_path / 'x.log', *(f'[INFO:swift] {m}\n' for m in caplog.messages))
        [rec] = drift.load_fingerprints(path)
        assert rec == {'role': 'rollout', 'rank': 0, 'pid': os.getpid(),
                       'template': 'qwen2_5_vl_geo', 'fingerprint': settings.fingerprint(),
                       'settings': settings.to_dict(), 'time': None, 'source': path, 'line': 1}

    def test_other_lines_torn_lines_and_repr_lines_are_skipped(self, tmp_path):
        # Settings written as a Python repr (not JSON) are not read: no literal_eval on log text.
        old_style = (f'INFO swift_ext.runlog: swift-ext qwen2_5_vl_geo preprocessing fingerprint '
                     f'{drift._fingerprint(QWEN)}: {QWEN!r}\n')
        path = write(tmp_path / 'mixed.log', 'some other line\n', '{"not": "ours"}\n',
                     record(QWEN), old_style, record(QWEN, pid=3)[:40] + '\n')
        recs = drift.load_fingerprints(path)
        assert [(r['line'], r['pid'], r['settings']) for r in recs] == [(3, 1, QWEN)]

    def test_each_process_counts_with_its_last_settings(self, tmp_path, capsys):
        # The trainer logs when its template loads and again from the callback: the latest wins.
        small = default_settings('qwen2_5_vl_geo', max_pixels=50176).to_dict()
        path = write(tmp_path / 'g.jsonl', record(small), record(QWEN),
                     record(QWEN, role='rollout', pid=2))
        rc, out, _ = run_check([path], capsys)
        assert rc == 0 and out.splitlines()[-1].startswith('same preprocessing')

    def test_processes_of_one_side_that_disagree_are_compared(self, tmp_path, capsys):
        # e.g. a rollout that wrote to the trainer's directory without SWIFT_EXT_ROLE.
        small = default_settings('qwen2_5_vl_geo', max_pixels=50176).to_dict()
        path = write(tmp_path / 'g.jsonl', record(QWEN, pid=7), record(small, pid=8))
        rc, out, _ = run_check([path], capsys)
        assert rc == 1
        assert out.splitlines()[-2:] == [
            'preprocessing differs between trainer (pid 8) and trainer (pid 7) (1 setting):',
            '  max_pixels: trainer (pid 8) 50176, trainer (pid 7) unset']


def _missing(d):
    return str(d / 'missing.jsonl')


def _no_fingerprint(d):
    return write(d / 'empty.log', 'nothing here\n')


def _dir_without_file(d):
    (d / 'run').mkdir()
    return str(d / 'run')


def _parent_of_runs(d):
    (d / 'out' / 'v0-1').mkdir(parents=True)
    write(d / 'out' / 'v0-1' / 'geometry_settings.jsonl', record(QWEN))
    return str(d / 'out')


def _one_side_only(d):
    return write(d / 'one.jsonl', record(QWEN))


class TestUnreadableInput:
    @pytest.mark.parametrize('make, message', [
        (_missing, '{d}/missing.jsonl: cannot read it (No such file or directory).'),
        (_no_fingerprint,
         ('{d}/empty.log: no preprocessing fingerprint in it (was the process started with '
          '--external_plugins templates/plugin.py and a *_geo --template?).')),
        (_dir_without_file,
         ('{d}/run: directory has no geometry_settings.jsonl (a run with --callbacks geo_log, '
          'or a process with SWIFT_EXT_GEO_LOG_DIR set, writes it).')),
        (_parent_of_runs,
         ('{d}/out: directory has no geometry_settings.jsonl; these runs under it have one: '
          '{d}/out/v0-1/geometry_settings.jsonl.')),
        (_one_side_only,
         ("{d}/one.jsonl: holds only the trainer side's settings (fingerprint {fp}), nothing "
          'to compare; pass the other side too (swift-ext check TRAINER ROLLOUT), or start '
          'the rollout with SWIFT_EXT_ROLE=rollout.')),
    ], ids=['missing', 'no_fingerprint', 'dir_without_file', 'parent_of_runs', 'one_side_only'])
    def test_exit_2_names_the_file(self, tmp_path, capsys, make, message):
        path = make(tmp_path)
        rc, out, err = run_check([path], capsys)
        assert (rc, out) == (2, '')
        assert err == 'swift-ext check: ' + message.format(
            d=tmp_path, fp=drift._fingerprint(QWEN)) + '\n'

    def test_bad_second_argument_is_named(self, tmp_path, capsys):
        good = write(tmp_path / 'g.jsonl', record(QWEN))
        rc, _, err = run_check([good, str(tmp_path / 'rollout.log')], capsys)
        assert rc == 2
        assert err == (f'swift-ext check: {tmp_path}/rollout.log: cannot read it '
                       '(No such file or directory).\n')

    def test_cli_exit_2(self, tmp_path):
        proc = subprocess.run([sys.executable, '-m', 'swift_ext.cli', 'check',
                               str(tmp_path / 'nope')], capture_output=True, text=True)
        assert proc.returncode == 2
        assert f'{tmp_path}/nope: cannot read it' in proc.stderr
