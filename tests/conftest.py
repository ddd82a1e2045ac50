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

from typing import Callable, Dict  # noqa: E402

import pytest  # noqa: E402

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
    built: Dict[str, str] = {}

    def factory(family: str) -> str:
        if family not in built:
            built[family] = make_tiny_model(family, str(root / family))
        return built[family]

    return factory


@pytest.fixture(scope='session')
def sample_images(tmp_path_factory) -> Dict[str, str]:
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
