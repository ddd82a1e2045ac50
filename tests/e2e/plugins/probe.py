"""A plugin for e2e tests: registers swift-ext, plus a reward that writes down the geometry it got.

The reward returns None (no opinion), so it does not change training.
"""
import json
import os

import swift_ext.plugin  # noqa: F401
from swift_ext.images import image_key
from swift_ext.rewards import geo_reward
from swift_ext.store import STORE, row_limits_key


@geo_reward('geo_probe')
def geo_probe(completion, *, image_geometry, settings, images=None, chat_template_kwargs=None, **row):
    src = images or []
    with open(os.environ['GEO_PROBE_OUT'], 'a') as f:
        f.write(json.dumps({
            'paths': [s.get('path') if isinstance(s, dict) else s for s in src],
            'geometry': None if image_geometry is None else [g.to_dict() for g in image_geometry],
            'from_template': [STORE.get(image_key(s), row_limits_key(chat_template_kwargs),
                                        settings.template) is not None for s in src],
            'row': chat_template_kwargs, 'coords': settings.coords,
            'template': settings.template, 'fingerprint': settings.fingerprint(),
        }) + '\n')
    return None
