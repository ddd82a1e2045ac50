"""swift-ext: see what a vision-language model sees during ms-swift training.

Light on purpose: importing ``swift_ext`` imports neither torch, PIL nor swift. The templates,
rewards and callback register themselves when the plugin file (``swift-ext plugin-path``, or
``templates/plugin.py`` in the repository) is imported by ms-swift.

Public API without a model in the process:

- ``predict_geometry(template, *, width, height, row_kwargs=None, swift_max_pixels=None, env=None)``
  -> :class:`ImageGeometry`, for every registered `_geo` template;
- ``ImageGeometry.to_model_frame(box, coords)`` / ``.from_model_frame(box, coords)``: boxes between
  original pixels and what the model writes (``'abs'``, ``'norm1000'``, ``'norm1'``);
- :class:`GeometryError` (a ``ValueError``) where the parent template refuses an image.
"""
from .geometry import GeometryError, ImageGeometry
from .settings import predict_geometry

__version__ = '0.2.0'
__all__ = ['GeometryError', 'ImageGeometry', 'predict_geometry', '__version__']
