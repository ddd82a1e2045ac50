"""swift-ext as users get it: a wheel, installed (not editable) into a fresh environment.

Nothing is downloaded. The wheel is built from a copy of the sources with the project's own
setuptools. Each fresh environment sees .venv's packages through a one-line .pth file (a plain
path, so .venv's editable swift-ext finder does not run) and installs with ``--no-index``:
pip must find every dependency already installed, which is the situation of a user adding
swift-ext to a working ms-swift environment. Subprocesses run outside the repository, so the
only swift_ext they can import is the installed one.

The wheel carries a local version (``0.1.0+wheeltest``) so pip installs it next to .venv's
editable 0.1.0 instead of calling that one "already satisfied".
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import swift_ext
from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_SITE = sysconfig.get_paths()['purelib']
VERSION = '0.1.0+wheeltest'
# "Another torch": a torch / torchvision pair other than constraints.txt's, as pip sees it.
# pip without this machine's configuration (its find-links folder holds a torch wheel): only
# what is installed counts.
PIP_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith('PIP_')}, 'PIP_CONFIG_FILE': os.devnull}
OTHER_TORCH = {'torch': ('2.5.1', []), 'torchvision': ('0.20.1', ['torch==2.5.1'])}


def run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    text = proc.stdout + proc.stderr
    start = text.rfind('Traceback')
    assert proc.returncode == 0, (cmd[:6], text[start:][-4000:] if start >= 0 else text[-3000:])
    return proc


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel of a copy of the sources (its version made local)."""
    src = tmp_path_factory.mktemp('src')
    for name in ('setup.cfg', 'pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, 'swift_ext'), src / 'swift_ext',
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    # setup.cfg reads the one version from swift_ext.__version__: make that local in the copy.
    init = src / 'swift_ext' / '__init__.py'
    text = init.read_text()
    line = f"__version__ = '{swift_ext.__version__}'"
    assert text.count(line) == 1, 'swift_ext/__init__.py no longer sets __version__ on one line'
    init.write_text(text.replace(line, f"__version__ = '{VERSION}'"))
    out = tmp_path_factory.mktemp('dist')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
         '-q', '-w', str(out), str(src)], env=PIP_ENV)
    [whl] = list(out.glob('swift_ext-*.whl'))
    return str(whl)


def fresh_env(path, fake=None):
    """A new virtual environment that also sees .venv's packages; ``fake``: dists shadowing them.

    Without pip or setuptools of its own (.venv's pip installs into it with ``--python``): the
    setuptools ensurepip would add is older than torch's requirement and would shadow .venv's.
    """
    run([sys.executable, '-m', 'venv', '--without-pip', str(path)])
    python = str(path / 'bin' / 'python')
    site = run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).stdout.strip()
    with open(os.path.join(site, '_base_venv.pth'), 'w') as f:
        f.write(BASE_SITE + '\n')  # after this environment's own site-packages on sys.path
    for name, (version, requires) in (fake or {}).items():
        info = os.path.join(site, f'{name}-{version}.dist-info')
        os.makedirs(info)
        with open(os.path.join(info, 'METADATA'), 'w') as f:
            f.write(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'
                    + ''.join(f'Requires-Dist: {r}\n' for r in requires))
        open(os.path.join(info, 'RECORD'), 'w').close()
    return python, site


def pip_install(python, wheel, *extra, cwd):
    return run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-index',
                '--disable-pip-version-check', *extra, wheel], cwd=cwd, env=PIP_ENV)


def test_installed_wheel_runs_grpo_through_plugin_path(wheel, tiny_model, tmp_path):
    python, site = fresh_env(tmp_path / 'env')
    pip_install(python, wheel, cwd=tmp_path)
    swift_ext_bin = str(tmp_path / 'env' / 'bin' / 'swift-ext')
    plugin = run([swift_ext_bin, 'plugin-path'], cwd=tmp_path).stdout.strip()
    # the plugin file is the installed package's own, not the repository's
    assert plugin == os.path.join(site, 'swift_ext', 'plugin.py') and os.path.isfile(plugin)
    data = make_dataset(str(tmp_path / 'data'), sizes=(('landscape', 320, 240), ('tiny', 50, 60)))
    out = tmp_path / 'out'
    env = {**os.environ, 'PYTHONPATH': ''}
    run([python, '-c', 'import sys; from swift.cli.main import cli_main; sys.exit(cli_main())',
         'rlhf', '--rlhf_type', 'grpo', '--model', tiny_model('qwen2_5_vl'),
         '--model_type', run_flags('qwen2_5_vl')['model_type'], '--template', 'qwen2_5_vl_geo',
         '--external_plugins', plugin, '--reward_funcs', 'geo_iou', 'geo_format', '--callbacks', 'geo_log',
         '--dataset', data, '--num_generations', '2', '--per_device_train_batch_size', '4',
         '--max_completion_length', '8', '--max_steps', '1', '--tuner_type', 'lora', '--torch_dtype', 'float32',
         '--report_to', 'none', '--check_model', 'false', '--output_dir', str(out), '--logging_steps', '1',
         '--save_strategy', 'no', '--dataloader_num_workers', '0', '--seed', '1'], cwd=tmp_path, env=env)
    [run_dir] = list(out.glob('v*-*'))
    step = json.loads((run_dir / 'logging.jsonl').read_text().splitlines()[0])
    assert 'rewards/GeoIoU/mean' in step and step['vision/images_per_step'] > 0, sorted(step)
    records = [json.loads(x) for x in (run_dir / 'image_geometry.jsonl').read_text().splitlines()]
    assert {(r['original_width'], r['original_height']) for r in records} == {(320, 240), (50, 60)}
    # and the process really ran the installed copy
    where = run([python, '-c', 'import swift_ext; print(swift_ext.__file__)'], cwd=tmp_path, env=env).stdout
    assert where.strip().startswith(site)


def test_install_keeps_the_environments_torch(wheel, tmp_path):
    # A user environment with another torch: installing swift-ext must not replace it. With
    # --no-index, pip could not even fetch a different torch: the install succeeds only when
    # setup.cfg's ranges accept the torch / torchvision already there.
    python, site = fresh_env(tmp_path / 'env', fake=OTHER_TORCH)
    report = tmp_path / 'report.json'
    pip_install(python, wheel, '--dry-run', '--report', str(report), cwd=tmp_path)
    planned = {item['metadata']['name'] for item in json.loads(report.read_text())['install']}
    assert planned == {'swift-ext'}
    pip_install(python, wheel, cwd=tmp_path)
    versions = run([python, '-c', 'from importlib.metadata import version as v; '
                    'print(v("torch"), v("torchvision"), v("swift-ext"))'], cwd=tmp_path).stdout.split()
    assert versions == ['2.5.1', '0.20.1', VERSION]
