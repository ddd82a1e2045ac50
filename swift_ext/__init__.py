"""swift-ext: see what a vision-language model sees during ms-swift training.

Light on purpose: importing ``swift_ext`` imports neither torch, PIL nor swift. The templates,
rewards and callback register themselves when the plugin file (``swift-ext plugin-path``, or
``templates/plugin.py`` in the repository) is imported by ms-swift.

The public API is what ``__all__`` names, usable with no model in the process:

- ``predict_geometry(template, *, width, height, row_kwargs=None, swift_max_pixels=None, env=None)``
  -> :class:`ImageGeometry`, for every registered `_geo` template;
- ``predict_video_geometry(template, *, width, height, total_frames, video_fps, row_kwargs=None, env=None)``
  -> :class:`VideoGeometry` (frames sampled, their times, per-frame size, tokens), for the `_geo`
  templates with video geometry; :class:`VideoError` where the template refuses a video;
- ``ImageGeometry.to_model_frame(box, coords)`` / ``.from_model_frame(box, coords)``: boxes between
  original pixels and what the model writes (one of ``COORDS``: ``'abs'``, ``'norm1000'``,
  ``'norm1'``, ``'norm999'``, the location bins ``'bins1000'`` / ``'bins1024'``); ``.scale`` /
  ``.max_scale``: how much each axis was enlarged or shrunk;
- :class:`GeometryError` (a ``ValueError``) where the parent template refuses an image;
- :class:`Clamp`: the names a record's ``clamped`` takes (which limit changed an image's size);
- ``iou_score``, ``parse_solution`` (``swift_ext.scoring``) and ``parse_boxes`` (``swift_ext.boxes``):
  scoring outside training.

and, with ms-swift in the process, the modules ``swift_ext.rewards`` (``geo_reward``, ``GeoReward``
and the rewards) and ``swift_ext.plugin`` (the file for ``--external_plugins``). Every other module
is internal: it may change between releases, and says so.
"""
from .boxes import parse_boxes
from .geometry import COORDS, Clamp, GeometryError, ImageGeometry, VideoError, VideoGeometry
from .scoring import iou_score, parse_solution
from .settings import predict_geometry, predict_video_geometry

__version__ = '0.2.0'  # the one version: setup.cfg reads it (version = attr: swift_ext.__version__)
__all__ = ['COORDS', 'Clamp', 'GeometryError', 'ImageGeometry', 'VideoError', 'VideoGeometry', 'iou_score',
           'parse_boxes', 'parse_solution', 'predict_geometry', 'predict_video_geometry', '__version__']
# Public modules besides this one (their own names are their API); everything else in the package is internal.
PUBLIC_MODULES = ('swift_ext.boxes', 'swift_ext.scoring', 'swift_ext.rewards', 'swift_ext.plugin')
