"""Reward classes: geometry handed to rewards, both lookup paths agree, never a crash."""
import logging
import pickle
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import swift_ext.plugin  # noqa: F401
from swift_ext.rewards import SHIPPED, GeoFormat, GeoIoU, GeoIoU50, GeoReward, geo_reward, geometry_for_images
from swift_ext.settings import default_settings
from swift_ext.store import STORE


class _Args:
    template = 'qwen2_5_vl_geo'


@pytest.fixture(autouse=True)
def no_templates_from_other_tests(monkeypatch):
    # Templates built by earlier tests (with other limits) stay active process-wide; each
    # test here starts as a fresh trainer process would, before any template is built.
    from swift_ext import store
    store.reset()


def _images(path):
    return [[{'bytes': None, 'path': path}]]


def test_registered_in_orms():
    from swift.rewards import orms
    for name, cls in SHIPPED.items():
        assert orms[name] is cls


def test_rewards_pickle():
    # Rollout workers may receive reward objects by pickling.
    for cls in SHIPPED.values():
        clone = pickle.loads(pickle.dumps(cls(args=_Args())))
        assert clone.template == 'qwen2_5_vl_geo'


def test_geo_iou_from_predicted_geometry(sample_images):
    # No template in play: geometry is predicted from the header (server mode path).
    STORE.clear()
    path = sample_images['landscape']  # 640x480 -> 644x476 for Qwen2.5-VL, absolute coords
    reward = GeoIoU(args=_Args())
    gt = [64, 48, 320, 240]
    exact = '[{"bbox_2d": [64.4, 47.6, 322.0, 238.0], "label": "box"}]'  # gt in the resized frame
    naive = '[{"bbox_2d": [64, 48, 320, 240], "label": "box"}]'  # gt pasted unmapped
    out = reward([exact, naive, 'no box here'], images=_images(path) * 3, solution=[gt] * 3)
    assert out[0] == pytest.approx(1.0)
    assert 0.95 < out[1] < 1.0
    assert out[2] == 0.0


def test_norm1000_family(sample_images):
    class Q3:
        template = 'qwen3_vl_geo'
    path = sample_images['landscape']
    out = GeoIoU(args=Q3())(['[{"bbox_2d": [100, 100, 500, 500]}]'], images=_images(path),
                            solution=[[64, 48, 320, 240]])
    assert out[0] == pytest.approx(1.0)


def test_template_record_and_prediction_agree(tiny_model, sample_images):
    # The record made by the template in this process equals the header-based prediction,
    # for defaults, a per-row limit and ms-swift's --max_pixels.
    from swift.model import get_processor
    from swift.template import get_template
    proc = get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl')
    for max_pixels in (None, 50176):
        tpl = get_template(proc, template_type='qwen2_5_vl_geo', max_pixels=max_pixels)
        tpl.set_mode('transformers')
        for name, path in sample_images.items():
            for row in (None, {'max_pixels': 100000}):
                STORE.clear()
                sample = {'messages': [{'role': 'user', 'content': '<image>box?'}],
                          'images': [{'bytes': None, 'path': path}]}
                if row:
                    sample['chat_template_kwargs'] = row
                tpl.encode(sample)
                settings_ = tpl.geo_settings()
                recorded = geometry_for_images([{'bytes': None, 'path': path}], settings_, row)
                assert len(STORE) == 1
                STORE.clear()
                predicted = geometry_for_images([{'bytes': None, 'path': path}], settings_, row)
                assert recorded == predicted, (name, max_pixels, row)


def test_geo_format_by_family():
    class IVL:
        template = 'internvl_hf_geo'
    assert GeoFormat(args=_Args())(['[{"bbox_2d": [1, 2, 3, 4]}]', '<box>[[1,2,3,4]]</box>'],
                                   images=[None, None]) == [1.0, 0.0]
    assert GeoFormat(args=IVL())(['<box>[[1,2,3,4]]</box>'], images=[None]) == [1.0]


def test_bad_ground_truth_gives_none_and_warns_once(sample_images, caplog):
    path = sample_images['landscape']
    reward = GeoIoU50(args=_Args())
    with caplog.at_level(logging.WARNING):
        out = reward(['[1,2,3,4]'] * 4, images=_images(path) * 4,
                     solution=[None, 'not json', [[-5, 0, 10, 10]], [[0, 0, 1, 1]] * 500])
    assert out == [None] * 4
    assert sum('ground truth' in r.message for r in caplog.records) == 1


def test_unreadable_image_gives_none(tmp_path):
    out = GeoIoU(args=_Args())(['[1,2,3,4]'], images=_images(str(tmp_path / 'gone.png')),
                               solution=[[0, 0, 5, 5]])
    assert out == [None]


def test_custom_reward_decorator(sample_images):
    @geo_reward('test_resized_area')
    def resized_area(completion, *, image_geometry, settings, **row):
        """Fraction of the original pixels kept after resize (a toy reward)."""
        geo = image_geometry[0]
        return min(1.0, geo.resized_width * geo.resized_height / (geo.original_width * geo.original_height))
    from swift.rewards import orms
    assert orms['test_resized_area'] is resized_area
    assert resized_area.__name__ == 'ResizedArea'  # the log key
    out = resized_area(args=_Args())(['x'], images=_images(sample_images['tiny']))
    assert out == [1.0]  # 50x60 is grown to 56x56


@geo_reward('test_pickled_center')
def pickled_center(completion, *, image_geometry, settings, **row):
    """A user reward defined at module level, as in a plugin file."""
    return 1.0 if image_geometry else None


def test_decorated_reward_pickles(sample_images):
    # A rollout worker receives rewards pickled: class and instance must come back by name.
    import pickle
    assert pickled_center.__qualname__ == 'PickledCenter'
    assert pickle.loads(pickle.dumps(pickled_center)) is pickled_center
    instance = pickle.loads(pickle.dumps(pickled_center(args=_Args())))
    assert type(instance) is pickled_center
    assert instance(['x'], images=_images(sample_images['tiny'])) == [1.0]


def test_second_registration_is_a_noop_and_a_clash_is_refused():
    from swift.rewards import orms

    from swift_ext.rewards import register_reward
    register_reward('test_pickled_center', pickled_center)  # the same class again: no-op
    assert orms['test_pickled_center'] is pickled_center

    class Other(GeoReward):
        pass
    with pytest.raises(ValueError, match="reward name 'test_pickled_center' is already registered to"):
        register_reward('test_pickled_center', Other)


def test_user_exception_is_none_not_zero(sample_images):
    class Broken(GeoReward):
        def score(self, completion, **kw):
            raise KeyError('oops')
    assert Broken(args=_Args())(['a', 'b'], images=_images(sample_images['tiny']) * 2) == [None, None]


HOSTILE = [
    '', '[', '{"bbox_2d": [1, 2, 3', '[nan, 1, 2, 3]', '[inf, 0, 1e308, 1e308]', '[1e308, 1e308, -1e308, 5]',
    '[-10, -10, -1, -1]', '[500, 400, 100, 50]', '[' + '[1,2,3,4],' * 10000 + ']',
    '[' * 100000 + ']' * 100000, 'x' * 1_000_000, '[١٢,٣٤,٥٦,٧٨]', '<box>' * 50000,
    '<answer>' + '<|box_start|>(1,2),(3,4)<|box_end|>' * 5000, '\x00\ud800' * 1000,
]


@pytest.mark.parametrize('text', HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_completions_every_reward(sample_images, text):
    for name, cls in SHIPPED.items():
        start = time.perf_counter()
        out = cls(args=_Args())([text], images=_images(sample_images['landscape']),
                                 solution=[[10, 10, 200, 200]])
        assert time.perf_counter() - start < 1.0, name
        assert out[0] is None or (isinstance(out[0], float) and 0.0 <= out[0] <= 1.0), (name, out)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_fuzz_every_reward(sample_images, text):
    images = _images(sample_images['portrait'])
    for cls in SHIPPED.values():
        out = cls(args=_Args())([text], images=images, solution=[[1, 2, 30, 40]])
        assert out[0] is None or 0.0 <= out[0] <= 1.0


def test_default_settings_coords():
    assert default_settings('qwen2_5_vl_geo').coords == 'abs'
    assert {default_settings(t).coords for t in ('qwen2_vl', 'qwen3_vl', 'internvl_hf')} == {'norm1000'}


def test_malformed_batch_columns_never_raise(sample_images):
    # Fewer image entries than completions, and a row limit that is not a number.
    out = GeoIoU(args=_Args())(['[1,2,3,4]'] * 3, images=_images(sample_images['landscape']),
                               chat_template_kwargs=[{'max_pixels': 'lots'}, 'not a dict', None],
                               solution=[[0, 0, 10, 10]] * 3)
    assert out == [None, None, None]
