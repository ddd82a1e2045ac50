"""The public line: swift_ext.__all__, README's API section, one version, no compatibility shims."""
import importlib
import os
import pkgutil
import re

import pytest

import swift_ext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_all_names_their_real_homes():
    from swift_ext import boxes, geometry, scoring, settings
    homes = {'COORDS': geometry, 'Clamp': geometry, 'GeometryError': geometry, 'ImageGeometry': geometry,
             'iou_score': scoring, 'parse_solution': scoring, 'parse_boxes': boxes,
             'predict_geometry': settings, 'predict_video_geometry': settings, 'VideoGeometry': geometry,
             'VideoError': geometry}
    assert sorted(swift_ext.__all__) == sorted([*homes, '__version__'])
    for name, module in homes.items():
        assert getattr(swift_ext, name) is getattr(module, name), name
    scope: dict = {}
    exec('from swift_ext import *', scope)
    assert set(swift_ext.__all__) <= set(scope)


def test_readme_api_section_names_the_public_api():
    readme = open(os.path.join(ROOT, 'README.md')).read()
    section = readme[readme.index('## The geometry API'):readme.index('## Logs:')]
    missing = [name for name in swift_ext.__all__ + [m.rsplit('.', 1)[1] for m in swift_ext.PUBLIC_MODULES[2:]]
               if f'`{name}`' not in section and f'swift_ext.{name}' not in section]
    assert missing == []


def test_one_version():
    # setup.cfg reads the package's own __version__ (setuptools' static attr: read, no import).
    from setuptools.config.setupcfg import read_configuration
    cfg = os.path.join(ROOT, 'setup.cfg')
    assert re.search(r'^version = attr: swift_ext.__version__$', open(cfg).read(), re.M)
    assert read_configuration(cfg)['metadata']['version'] == swift_ext.__version__ == '0.2.0'


@pytest.mark.parametrize('module', sorted(
    m.name for m in pkgutil.walk_packages(swift_ext.__path__, 'swift_ext.')
    if m.name.split('.')[1] in ('geometry', 'settings', 'families', 'images', 'scoring', 'boxes')))
def test_no_module_level_getattr_shim(module):
    # A name lives in one module and is imported from there (PEP 562 forwarding hides where).
    assert not hasattr(importlib.import_module(module), '__getattr__'), module
