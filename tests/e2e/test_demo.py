"""`bash scripts/demo.sh` prints progress lines and the table, not pip's and ms-swift's ~1,150 lines (issue 26,
item 10): pip's output goes to demo_run/setup.log, ms-swift's to demo_run/swift.log.

The script runs in a copy of the repository whose `.venv` is a stand-in: its `python` and `swift-ext` run this
interpreter (with this checkout first on the path), and its `python -m pip` prints one line and installs nothing.
"""
import os
import shutil
import stat
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE_HEAD = 'image                        original    resized tokens tiles'


def _shim(path, body):
    with open(path, 'w') as f:
        f.write('#!/usr/bin/env bash\n' + body + '\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _repo(tmp_path, *, installed=True):
    """A repository copy with scripts/, setup.cfg, constraints.txt and a stand-in .venv."""
    root = tmp_path / 'repo'
    shutil.copytree(os.path.join(ROOT, 'scripts'), root / 'scripts')
    for name in ('setup.cfg', 'constraints.txt'):
        shutil.copy(os.path.join(ROOT, name), root / name)
    bin_dir = root / '.venv' / 'bin'
    bin_dir.mkdir(parents=True)
    env = f'export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}'
    if installed:
        _shim(bin_dir / 'python', f'{env}\nif [ "$1 $2" = "-m pip" ]; then echo "pip stand-in: nothing installed"; '
                                  f'exit 0; fi\nexec {sys.executable} "$@"')
    else:  # pip fails: what setup.log holds, and what the terminal shows of it
        _shim(bin_dir / 'python', 'echo "ERROR: No matching distribution found for torch" >&2\nexit 1')
    _shim(bin_dir / 'swift-ext', f'{env}\nexec {sys.executable} -m swift_ext.cli "$@"')
    return root


def test_demo_prints_progress_and_the_table(tmp_path):
    root = _repo(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(['bash', str(root / 'scripts' / 'demo.sh'), '--batch_size', '4'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) < 25 and not proc.stderr.strip(), proc.stdout + proc.stderr
    assert all(line.startswith('[demo] ') for line in lines[:lines.index('') if '' in lines else 0])
    assert 'INFO:swift' not in proc.stdout and 'Requirement' not in proc.stdout
    table = lines.index(TABLE_HEAD.rstrip()) if TABLE_HEAD.rstrip() in lines else \
        next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEAD))
    assert lines[table + 2].split()[0].endswith('.png')  # a row of the table
    assert lines[-1] == f"ms-swift's full output: {root / 'demo_run' / 'swift.log'}"
    log = (root / 'demo_run' / 'swift.log').read_text()
    assert '[INFO:swift]' in log and len(log.splitlines()) > 100  # what the terminal no longer shows
    assert 'pip stand-in: nothing installed' in (root / 'demo_run' / 'setup.log').read_text()
    assert 'pip stand-in' not in proc.stdout


def test_a_failed_setup_shows_the_end_of_its_log(tmp_path):
    root = _repo(tmp_path, installed=False)
    proc = subprocess.run(['bash', str(root / 'scripts' / 'demo.sh')], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert '[demo] setting up .venv failed; the end of demo_run/setup.log:' in proc.stderr
    assert 'No matching distribution found for torch' in proc.stderr
    assert 'No matching distribution' in (root / 'demo_run' / 'setup.log').read_text()


def test_a_failed_run_names_the_log_without_a_traceback(tmp_path):
    out = tmp_path / 'run'
    proc = subprocess.run([sys.executable, '-m', 'swift_ext.cli', 'demo', '--out', str(out), '--template',
                           'qwen2_5_vl_geo', '--', '--no_such_swift_flag', '1'], capture_output=True, text=True,
                          timeout=900, env={**os.environ, 'PYTHONPATH': ROOT})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'swift-ext demo: the run failed' in proc.stderr and str(out / 'swift.log') in proc.stderr
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert 'no_such_swift_flag' in (out / 'swift.log').read_text()
