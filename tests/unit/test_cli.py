"""The `swift-ext` dispatcher and its small commands: templates, plugin-path, errors without tracebacks."""
import json
import os
import subprocess
import sys

from swift_ext.cli import templates_table
from swift_ext.families import describe, template_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'swift_ext.cli', *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_templates_json_lists_every_registered_template():
    proc = _cli('templates', '--json')
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r['template'] for r in rows] == template_names()
    assert {r['template']: r['coords'] for r in rows} == {r['template']: r['coords'] for r in describe()}
    qwen25 = next(r for r in rows if r['template'] == 'qwen2_5_vl_geo')
    assert (qwen25['parent'], qwen25['family'], qwen25['coords'], qwen25['tiny_model']) == \
        ('qwen2_5_vl', 'qwen', 'abs', True)


def test_readme_template_table_is_the_commands_output():
    # README's table is `swift-ext templates --markdown`, so it covers every template.
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert templates_table.format_markdown(templates_table.rows()) in readme


def test_plugin_path_is_the_packaged_plugin():
    proc = _cli('plugin-path')
    path = proc.stdout.strip()
    assert proc.returncode == 0 and os.path.isabs(path) and os.path.isfile(path)
    assert path == os.path.join(ROOT, 'swift_ext', 'plugin.py')
    # Importable as a plain file, the way --external_plugins loads it (no package context).
    code = f'import runpy; runpy.run_path({path!r})'
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_unknown_command_and_closed_pipe_print_no_traceback():
    proc = _cli('nope')
    assert proc.returncode == 2 and 'unknown command' in proc.stderr and 'Traceback' not in proc.stderr
    # The reader closes the pipe after one line: exit 0, nothing on stderr.
    proc = subprocess.run(f'{sys.executable} -m swift_ext.cli templates | head -1', shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith('template') and 'Traceback' not in proc.stderr
