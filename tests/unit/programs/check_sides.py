"""Builds the qwen2_5_vl_geo template once per side, each in a forked process with its own environment.

argv: MODEL_DIR SIDES_JSON, where SIDES_JSON maps a side name to {"log", "env", "max_pixels"}. Prints
{"pids": ..., "failed": [...]} as its last line. Used by tests/unit/test_check.py.
"""
import json
import os
import sys
import traceback

from swift.model import get_processor
from swift.template import get_template

import swift_ext.plugin  # noqa: F401  (registers the _geo templates)

model, sides = sys.argv[1], json.loads(sys.argv[2])
pids = {}
for name, side in sides.items():
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(side['log'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.update(side['env'])
            processor = get_processor(model, model_type='qwen2_5_vl')
            get_template(processor, template_type='qwen2_5_vl_geo', max_pixels=side['max_pixels'])
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    pids[name] = pid
failed = [n for n, pid in pids.items() if os.waitpid(pid, 0)[1] != 0]
print(json.dumps({'pids': pids, 'failed': failed}))
