"""Encodes images with the real qwen2_5_vl_geo template under each environment case, one child per case.

ms-swift reads MAX_PIXELS and friends when the processor loads, so each case needs a fresh process.
Used by tests/unit/test_plan.py.
"""
import json
import os
import sys
import traceback

from swift.model import get_processor
from swift.template import get_template

import swift_ext.plugin  # noqa: F401  (registers the _geo templates)

model, cases, images, out = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
for name, env in cases.items():
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.update(env)
            template = get_template(get_processor(model, model_type='qwen2_5_vl'), template_type='qwen2_5_vl_geo')
            merge = template.processor.image_processor.merge_size ** 2
            result = {}
            for path in images:
                try:
                    enc = template.encode({'messages': [{'role': 'user', 'content': '<image>box?'},
                                                        {'role': 'assistant', 'content': 'ok'}], 'images': [path]})
                    result[path] = int(enc['image_grid_thw'][0].prod()) // merge
                except Exception as exc:
                    result[path] = 'error: ' + str(exc)[:200]
            with open(os.path.join(out, name + '.json'), 'w') as f:
                json.dump(result, f)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
