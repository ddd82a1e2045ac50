"""The family contract: what every geometry family provides, and the steps the base class does for it.

A family is a class with class attributes and classmethods only (it is never instantiated); one
module per family under ``swift_ext/families/`` defines one and registers it with
``register_family``. Nothing here imports torch, PIL or swift: the template hooks receive the
live ms-swift template object and import what they need inside the method. Internal: users reach
families through ``swift_ext.predict_geometry`` and the `_geo` templates.

**What a family writes** (class attributes, then hooks; only ``resize`` is required):

- ``name``, ``settings_cls`` (a frozen ``PreprocessSettings`` subclass: the family's knobs),
  ``templates`` (one ``TemplateSpec`` per ms-swift parent), ``env_vars``, ``sweep_knob``,
  ``tile_knob`` (the settings field capping tiles, for ``plan``), ``encoded_keys`` /
  ``shape_keys`` (what ``actual`` reads of an encode), ``row_max_pixels_rescales``.
- ``resize(settings, *, width, height, row_kwargs, name) -> (ImageGeometry, Clamp | None)``: the
  family's own arithmetic on the size *after* ms-swift's pre-rescale: the geometry the processor
  gives, and the clamp of its own step (below). Raises ``GeometryError`` exactly where the parent
  template refuses the image. It may leave ``original_*`` at the size it was given.
- ``settings_from_env(settings, env)``: the environment variables ms-swift reads for it.
- ``settings_from_template(template, settings)``: the parent's defaults refined from the live
  template and processor (patch size, limits, ...).
- ``with_budget(settings, pixels)``: a pixel budget as ``sweep_knob`` applies it (``plan --sweep``).
- ``replaced_size(template, inputs, index)`` with ``reads_replace_tag = True``: for families whose
  template resizes the image itself (Qwen), the ``(width, height)`` ``replace_tag`` handed on.
- ``actual(template, encoded, entries, predicted) -> [ImageGeometry | None]``: the geometry the
  encode really produced, one per image: the prediction corrected by the token runs / grids found
  in ``encoded`` (helpers in ``families/encoded.py``: ``token_runs``, ``image_grids``, ``encoded_rows``).

**What the base class does** (not to be overridden):

- ``predict(settings, *, width, height, row_kwargs, name) -> (ImageGeometry, Clamp | None)``:
  checks the sides, applies ms-swift's pre-rescale (``Template._get_max_pixels``: a row's
  ``chat_template_kwargs.max_pixels``, else ``--max_pixels``; only ``--max_pixels`` where
  ``row_max_pixels_rescales`` is False, as Qwen's templates), calls ``resize`` on the pre-rescaled
  size, puts the file's own size back into ``original_*`` and names the clamp. A subclass that
  defines ``predict`` is refused at class creation.
- ``settings_for(parent, *, env, swift_max_pixels, overrides)``: the defaults, ``--max_pixels``,
  ``settings_from_env``, then the caller's overrides (None values dropped): the settings without
  a template in the process (rewards in vLLM server mode, ``plan``).
- ``default_settings(parent)``, ``spec(parent)``.

**Clamp names** (``swift_ext.geometry.Clamp``, a record's ``clamped``): the limit that changed the
image's size beyond the model's own rounding to its patch or tile multiple; None where only that
rounding (or nothing) changed it. One name an image, by precedence:

1. ms-swift's pre-rescale comes first in the pipeline and wins: ``max_pixels`` wherever
   ``--max_pixels`` or a row's ``max_pixels`` shrank the file, whatever the family did next.
2. Otherwise the family's own step, as ``resize`` returns it:

   - a smart_resize's pixel cap or floor (Qwen, GLM-4.1V, the GLM-5.3 canvas, PaddleOCR-VL):
     ``max_pixels`` / ``min_pixels``; where neither applied but a side under the patch factor was
     first scaled up to it (GLM-4.1V, PaddleOCR-VL): ``upscale``;
   - a cap on the longest side (Pixtral / Mistral 3): ``longest_edge``; Idefics3 sets the longest
     side to 4 x 364: ``longest_edge`` where that shrank it, ``upscale`` where it grew it;
   - a visual-token budget (Gemma 4): ``max_soft_tokens`` where a side shrank, ``upscale`` where
     none shrank and one grew;
   - a size the model fixes (Gemma 3's square, InternVL's tile grid, LLaVA-NeXT / OneVision's
     pinpoint canvas, MiniCPM-V's slices, Idefics3 without splitting): ``geometry.fit_clamp``:
     ``upscale`` where no side shrank and one grew, ``canvas_fit`` where a side shrank (a stretch
     that shrinks one side and grows the other included).

   Within one family, the step that decided the final size names it (a cap or a floor wins over
   the small-side upscale before it).
3. The net change is ``ImageGeometry.scale`` / ``max_scale``, whatever the name: a tool flags a
   large upscale with ``max_scale`` (an image pre-rescaled and then grown to a fixed input is
   named ``max_pixels``; its ``max_scale`` still says how much it was blown up).

In the order a `_geo` template uses them: ``default_settings`` + ``settings_from_template`` when its
processor is set; per encode, ``replaced_size`` after each ``replace_tag``; then, a moment later,
``predict`` per image and ``actual`` on the kept ``encoded_keys``.

**Video** (a family with ``video_geometry = True``; ``video_support`` / ``video_support_of`` say what each
template does with a video, ``records_video(parent)`` whether it is recorded, and ``swift-ext templates``
shows it): one ``VideoEntry`` per video of an encode, beside the ``ImageEntry`` list, and these hooks
(``families/video_hf.py`` has them for families whose HF processor samples the frames):

- ``video_settings(parent, *, template=None, env=None)``: the settings its video arithmetic reads,
  from the live template (what the process really runs with) or, without one, ``parent``'s under ``env``;
- ``predict_video(parent, settings, *, width, height, total_frames, video_fps, row_kwargs, mode, name)``
  and ``predict_video_frames(parent, settings, *, sizes, ...)`` (a list of frame files) ->
  ``VideoGeometry``, from a file's header alone (``swift_ext.predict_video_geometry`` calls them);
- ``replaced_video(template, inputs, index) -> VideoFound | None``: what the parent's
  ``replace_tag(media_type='video')`` handed on (the smallest hook every mode passes: training, the
  PyTorch engine, vLLM): the frames read, their size, and what the reader said;
- ``actual_video(template, encoded, entries, predicted, mode) -> ([VideoGeometry | None], basis)``:
  the prediction corrected by what the encode shows (``video_encoded_keys``: grids, token runs, the
  time text), and how it is known (``'encode'``, or ``'handed_video'`` in an engine's mode).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ..geometry import Clamp, GeometryError, ImageGeometry, VideoGeometry, check_side, swift_rescaled_size

# Every registered family by name (filled by ``swift_ext.families.register_family``).
FAMILIES: dict[str, type] = {}


@dataclass(frozen=True)
class ImageEntry:
    """One image of an encode as a `_geo` template knows it before the family reads the encode."""

    key: str  # the image's identity (swift_ext.images)
    name: str  # its short name for messages (never a payload)
    size: tuple[int, int] | None  # (width, height) ms-swift opened, before its --max_pixels; None: unknown
    error: GeometryError | None = None  # why it cannot be read, where known before the encode
    resized: tuple[int, int] | None = None  # what the parent's replace_tag handed on (``replaced_size``)


@dataclass(frozen=True)
class VideoFound:
    """A video as the parent's ``replace_tag`` handed it on: the frames its reader sampled and resized."""

    num_frames: int
    width: int  # each frame's resized size
    height: int
    sample_fps: float | None = None  # what fetch_video returned (None where the template drops it: Qwen2-VL)
    frame_indices: tuple[int, ...] | None = None  # as handed on (Qwen3-VL in vLLM mode: from the clip's first frame)
    video_fps: float | None = None  # the reader's frame rate, where the template keeps it
    clip_frames: int | None = None  # frames in the clip window, where the template keeps it


@dataclass(frozen=True)
class VideoEntry:
    """One video of an encode as a `_geo` template knows it before the family reads the encode."""

    key: str  # the video's identity (swift_ext.images' keys; a list of frame files: 'frames:<sha1>')
    name: str  # its short name for messages (never a payload)
    source: Any  # the row's video as ms-swift resolved it (a path, bytes, or a list of frame files)
    found: VideoFound | None = None  # what the parent's replace_tag handed on (``replaced_video``)
    error: GeometryError | None = None  # why it could not be read, where the encode refused it


@dataclass(frozen=True)
class TemplateSpec:
    """One ms-swift parent template a family covers, and what differs per template."""

    parent: str
    coords: str  # the convention this template's checkpoints answer in (see COORDS)
    box_styles: tuple[str, ...]  # boxes.STYLES the format reward accepts, first = canonical
    coords_source: str = ''  # where the convention comes from (model card, ms-swift norm_bbox, ...)
    # ms-swift --model_type of a tiny checkpoint ``make-tiny-model --family PARENT`` builds;
    # None when no tiny checkpoint is built for this template.
    model_type: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # settings overrides
    # False where the checkpoints have no trained (or no documented) box output: `coords` is then
    # only the closest default, and geo_iou scores only in the convention the user names
    # (SWIFT_EXT_COORDS) instead of guessing.
    boxes_trained: bool = True
    # How the geometry is verified (one of VERIFICATION): 'encode' where real encodes of this template's
    # class run offline (tiny checkpoint, byte-identical to the parent, the processor pinned over random
    # sizes); 'published_code' where the processor lives in the model's hub repository (remote code): the
    # arithmetic is reproduced from that published code and pinned to it, but no encode runs offline.
    verification: str = 'encode'

    @property
    def name(self) -> str:
        return self.parent + '_geo'


VERIFICATION = {'encode': 'real encodes', 'published_code': 'published processor code; encode not verified offline'}
# What a template does with a video row, and what swift-ext records of it (`swift-ext templates`).
VIDEO_SUPPORT = {
    'header_and_encode': 'recorded: frames, times, size, tokens (read from the encode; predicted from the header)',
    'encode': "recorded: frames, times, size, tokens (read from the encode, with the model's processor)",
    'as_images': 'frames become images (VIDEO_SEGMENTS); not recorded as a video',
    'refused': "ms-swift's template refuses a video (AssertionError)",
    'ignored': 'ms-swift keeps `<video>` as text: the model never sees the video',
    'none': 'not recorded',
}
RECORDED_VIDEO = ('header_and_encode', 'encode')


# What every tool says of a template whose checkpoints have no trained box output (`templates`, README, score).
UNTRAINED_COORDS = 'no trained box output: set `SWIFT_EXT_COORDS`'


def untrained_spec(parent: str, **kwargs) -> TemplateSpec:
    """The spec of a template whose checkpoints have no trained box output.

    ``norm1000`` (ms-swift's default ``norm_bbox``) and ``bare_list`` are then only defaults that
    geo_iou does not guess with: the user names the convention (``SWIFT_EXT_COORDS``).
    """
    return TemplateSpec(parent, 'norm1000', ('bare_list',), boxes_trained=False, **kwargs)


@dataclass(frozen=True)
class PreprocessSettings:
    """The settings every family shares; each family subclasses it with its own fields."""

    template: str
    family: str
    coords: str
    box_styles: tuple[str, ...] = ()
    # ms-swift's own pre-rescale (`--max_pixels`), applied before the model's resize.
    swift_max_pixels: int | None = None
    versions: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d['versions'] = dict(self.versions)
        d['box_styles'] = list(self.box_styles)
        return d

    def fingerprint(self) -> str:
        """A short hash of every setting that changes geometry (the name excluded)."""
        d = self.to_dict()
        d.pop('template')
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def predict(self, *, width: int, height: int, row_kwargs: Mapping | None = None,
                name: str = 'image') -> tuple[ImageGeometry, str | None]:
        """Predicted geometry of a ``width`` x ``height`` file, and which limit clamped it."""
        family = FAMILIES.get(self.family)
        if family is None:  # settings come from a registered family (or settings_from_dict, which loads them)
            raise ValueError(f'family must be one of {sorted(FAMILIES)}, got {self.family!r}.')
        return family.predict(self, width=width, height=height,
                                                 row_kwargs=row_kwargs or {}, name=name)


def settings_fields_from_dict(cls: type, d: Mapping[str, Any]) -> dict:
    """Constructor arguments of settings class ``cls`` from a ``to_dict()`` (JSON) form."""
    names = {f.name for f in dataclasses.fields(cls)}
    out = {k: d[k] for k in names if k in d}
    out['versions'] = tuple(sorted(dict(out.get('versions') or {}).items()))
    for f in dataclasses.fields(cls):  # JSON turned tuples into lists
        if f.name in out and isinstance(out[f.name], list):
            out[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in out[f.name])
    return out


class Family:
    """Base of every family: class attributes and classmethods only (never instantiated).

    A subclass sets the class attributes and implements ``resize``; it overrides the other hooks
    only where its parent template needs them (see the module docstring). ``predict`` is the base
    class's own and may not be overridden.
    """

    name: ClassVar[str] = ''
    settings_cls: ClassVar[type] = PreprocessSettings
    templates: ClassVar[tuple[TemplateSpec, ...]] = ()
    # What `plan --sweep` varies: 'MAX_PIXELS' (the model's own cap) or '--max_pixels'.
    sweep_knob: ClassVar[str] = '--max_pixels'
    # The settings field that caps a tiling family's tiles (`plan --sweep_max_num` varies it); None: no tiles.
    tile_knob: ClassVar[str | None] = None
    # Environment variables ms-swift reads for this family (documented in `templates`; read by ``settings_from_env``).
    env_vars: ClassVar[tuple[str, ...]] = ()
    # The keys of an encode's output that ``actual`` reads: only they are kept until it runs.
    encoded_keys: ClassVar[tuple[str, ...]] = ('input_ids',)
    # Of those, the ones whose ``.shape`` alone it reads (pixels: megabytes a sample otherwise held).
    shape_keys: ClassVar[tuple[str, ...]] = ()
    # ms-swift's Template._get_max_pixels: a row's chat_template_kwargs max_pixels, else --max_pixels,
    # is the pre-rescale of every template; Qwen's templates override it to --max_pixels only (the
    # row's value goes to fetch_image instead).
    row_max_pixels_rescales: ClassVar[bool] = True
    # Whether the family overrides ``replaced_size`` (the template then asks it after each replace_tag).
    reads_replace_tag: ClassVar[bool] = False
    # Whether the family records video geometry (the video hooks below are its own), and what of an
    # encode's output ``actual_video`` reads.
    video_geometry: ClassVar[bool] = False
    video_encoded_keys: ClassVar[tuple[str, ...]] = ()
    # What its templates do with a video row (a VIDEO_SUPPORT key), and parents that differ from it.
    video_support: ClassVar[str] = 'none'
    video_support_of: ClassVar[Mapping[str, str]] = {}
    # The reader whose header numbers the family's frame sampling sees (``video_io.BACKENDS``; None: the one
    # qwen-vl-utils picks), and the fields whose prediction an encode can contradict (a warned mismatch).
    video_header_backend: ClassVar[str | None] = None
    video_mismatch_fields: ClassVar[tuple[str, ...]] = ('num_frames', 'grid_t', 'resized_width', 'resized_height',
                                                        'num_tokens', 'sample_fps')
    # What ms-swift's parent collator needs equal in every row of a batch, in words (``collate_shape``).
    collate_rule: ClassVar[str] = ''

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if 'predict' in cls.__dict__:
            raise TypeError(f'{cls.__qualname__}: a family implements `resize`; `predict` (pre-rescale, '
                            'original size, clamp) belongs to the base class.')

    # --- settings ---------------------------------------------------------------------
    @classmethod
    def spec(cls, parent: str) -> TemplateSpec:
        for spec in cls.templates:
            if spec.parent == parent:
                return spec
        raise KeyError(parent)

    @classmethod
    def default_settings(cls, parent: str) -> PreprocessSettings:
        """The settings of ``parent``'s template with the real checkpoint's processor."""
        spec = cls.spec(parent)
        return cls.settings_cls(template=spec.name, family=cls.name, coords=spec.coords,
                                box_styles=spec.box_styles, **dict(spec.defaults))

    @classmethod
    def settings_for(cls, parent: str, *, env: Mapping[str, str],
                     swift_max_pixels: int | None = None,
                     overrides: Mapping[str, Any] | None = None) -> PreprocessSettings:
        """``parent``'s settings under ms-swift's flags and environment, with no template.

        The defaults, then ms-swift's ``--max_pixels``, then the environment (``settings_from_env``),
        then ``overrides``: family settings named by the caller (``plan --max_num``); a None override
        is no override.
        """
        settings = replace(cls.default_settings(parent), swift_max_pixels=swift_max_pixels)
        settings = cls.settings_from_env(settings, env)
        return replace(settings, **{k: v for k, v in dict(overrides or {}).items() if v is not None})

    @classmethod
    def settings_from_env(cls, settings: PreprocessSettings, env: Mapping[str, str]) -> PreprocessSettings:
        """``settings`` under the environment variables ms-swift reads for this family (``env_vars``)."""
        return settings

    @classmethod
    def settings_from_template(cls, template: Any, settings: PreprocessSettings) -> PreprocessSettings:
        """``settings`` (the parent's defaults) refined from the live template and processor."""
        return settings

    @classmethod
    def with_budget(cls, settings: PreprocessSettings, pixels: int) -> PreprocessSettings:
        """``settings`` under a pixel budget as ``sweep_knob`` applies it (for `plan`)."""
        return replace(settings, swift_max_pixels=pixels)

    @classmethod
    def collate_shape(cls, settings: PreprocessSettings, geometries: Sequence[ImageGeometry]) -> str | None:
        """The shape of one row's image tensors as ms-swift's parent collator joins them across a batch.

        Rows whose shapes differ cannot share a batch: the parent's ``data_collator`` raises (`plan` warns,
        naming them). None: this row batches with any row (the default, and a row without images).
        """
        return None

    # --- prediction -------------------------------------------------------------------
    @classmethod
    def predict(cls, settings: PreprocessSettings, *, width: int, height: int, row_kwargs: Mapping,
                name: str) -> tuple[ImageGeometry, Clamp | None]:
        """The geometry of a ``width`` x ``height`` file, and the clamp that changed its size (or None).

        The shared steps: the sides checked, ms-swift's pre-rescale, the family's ``resize`` on the
        pre-rescaled size, the file's own size put back, the clamp named (module docstring).
        """
        check_side('width', width, name)
        check_side('height', height, name)
        pre_max = row_number(row_kwargs, 'max_pixels', name) if cls.row_max_pixels_rescales else None
        if pre_max is None:
            pre_max = settings.swift_max_pixels
        w, h = swift_rescaled_size(width=width, height=height, max_pixels=pre_max, name=name)
        geo, clamp = cls.resize(settings, width=w, height=h, row_kwargs=row_kwargs, name=name)
        if (w, h) != (width, height):
            clamp = Clamp.MAX_PIXELS  # ms-swift's pre-rescale came first: it names the clamp
        if (geo.original_width, geo.original_height) != (width, height):
            geo = replace(geo, original_width=width, original_height=height)
        return geo, clamp

    @classmethod
    def resize(cls, settings: PreprocessSettings, *, width: int, height: int, row_kwargs: Mapping,
               name: str) -> tuple[ImageGeometry, Clamp | None]:
        """The family's own step: the geometry of a ``width`` x ``height`` processor input, and its clamp.

        ``width`` / ``height`` are after ms-swift's pre-rescale (positive integers); the geometry's
        ``original_*`` may be left at them (``predict`` puts the file's size back). Raises
        ``GeometryError`` exactly where the parent template refuses the image.
        """
        raise NotImplementedError(f'{cls.__qualname__} does not implement `resize`.')

    # --- template hooks -----------------------------------------------------------------
    @classmethod
    def replaced_size(cls, template: Any, inputs: Any, index: int) -> tuple[int, int] | None:
        """``(width, height)`` of image ``index`` as the parent's ``replace_tag`` handed it on, or None."""
        return None

    @classmethod
    def handed(cls, template: Any, encoded: Mapping, entries: Sequence[ImageEntry],
               predicted: Sequence[ImageGeometry | None]) -> tuple[list, str]:
        """For an inference engine's encode (vLLM, lmdeploy, sglang: the engine's processor resizes):
        the geometry per image and how it is known, ``'prediction'`` by default (from the size handed
        over, after ms-swift's pre-rescale), ``'handed_image'`` where the template already resized it."""
        return list(predicted), 'prediction'

    @classmethod
    def actual(cls, template: Any, encoded: Mapping, entries: Sequence[ImageEntry],
               predicted: Sequence[ImageGeometry | None]) -> list[ImageGeometry | None]:
        """The geometry the encode produced, per image; ``predicted`` where it says nothing."""
        return list(predicted)

    # --- video (families with ``video_geometry``) ------------------------------------------
    @classmethod
    def records_video(cls, parent: str) -> bool:
        """Whether ``parent``'s `_geo` template records video geometry (``VIDEO_SUPPORT``)."""
        return cls.video_geometry and cls.video_support_of.get(parent, cls.video_support) in RECORDED_VIDEO

    @classmethod
    def video_settings(cls, parent: str, *, template: Any = None, env: Mapping[str, str] | None = None) -> Any:
        """The settings the family's video arithmetic reads: the live template's, else ``parent``'s under ``env``."""
        raise ValueError(f'template {parent!r} ({cls.name} family) has no video geometry in swift-ext.')

    @classmethod
    def predict_video(cls, parent: str, settings: Any, *, width: int, height: int, total_frames: int,
                      video_fps: float, row_kwargs: Mapping, mode: str, name: str) -> VideoGeometry:
        """The geometry of a video file of ``total_frames`` frames at ``video_fps``, ``width`` x ``height``."""
        raise ValueError(f'template {parent!r} ({cls.name} family) has no video geometry in swift-ext.')

    @classmethod
    def predict_video_frames(cls, parent: str, settings: Any, *, sizes: Sequence[tuple[int, int]],
                             row_kwargs: Mapping, mode: str, name: str) -> VideoGeometry:
        """The geometry of a video given as frame files of ``sizes`` (``(width, height)`` each)."""
        raise ValueError(f'template {parent!r} ({cls.name} family) takes no list of frames as a video in swift-ext.')

    @classmethod
    def replaced_video(cls, template: Any, inputs: Any, index: int) -> VideoFound | None:
        """Video ``index`` as the parent's ``replace_tag`` handed it on, or None."""
        return None

    @classmethod
    def actual_video(cls, template: Any, encoded: Mapping, entries: Sequence[VideoEntry],
                     predicted: Sequence[VideoGeometry | None], mode: str) -> tuple[list, str]:
        """The geometry per video the encode produced, and how it is known; ``predicted`` where it says nothing."""
        return list(predicted), 'prediction'


def row_number(row_kwargs: Mapping, key: str, name: str) -> float | None:
    """A per-row numeric limit from ``chat_template_kwargs``, or None; refuses other types."""
    value = row_kwargs.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GeometryError(f'{name}: chat_template_kwargs `{key}` must be a number, got {value!r}.')
    return value


def env_int(env: Mapping[str, str], name: str) -> int | None:
    """An integer environment variable, or None when unset or empty."""
    value = env.get(name)
    if value in (None, ''):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'environment variable {name} must be an integer, got {value!r}.') from None
