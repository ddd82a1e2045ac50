"""README's examples run as written, and its plan output is what the command prints."""
import os
import re
import subprocess
import sys

import pytest

import swift_ext.plugin  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = open(os.path.join(ROOT, 'README.md')).read()


def _block(after: str, lang: str = 'python') -> str:
    start = README.index(after)
    m = re.compile(rf'```{lang}\n(.*?)```', re.S).search(README, start)
    return m.group(1)


def test_readme_commands_match_ci():
    # The test command README gives is the one CI runs.
    assert 'bash scripts/test.sh' in README
    assert 'bash scripts/test.sh' in open(os.path.join(ROOT, '.ci', 'run')).read()


def test_custom_reward_example(tmp_path, sample_images, monkeypatch):
    from swift_ext import store
    store.reset()  # as in a fresh trainer process: no template built by an earlier test stays active
    code = _block('### Your own reward with geometry')
    (tmp_path / 'my_plugin.py').write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_plugin
    from swift.rewards import orms
    cls = orms['center_hit']
    assert cls is my_plugin.center_hit and cls.__name__ == 'CenterHit'

    class Args:
        template = 'qwen2_5_vl_geo'
    images = [[{'bytes': None, 'path': sample_images['landscape']}]] * 3  # 640x480 -> 644x476
    out = cls(args=Args())(['[{"bbox_2d": [200, 150, 240, 190]}]', '[{"bbox_2d": [600, 400, 640, 470]}]', 'none'],
                           images=images, solution=[[100, 100, 300, 300]] * 3)
    assert out == [1.0, 0.0, 0.0]
    # Every solution form README documents: one box, a list of boxes, a JSON string of either.
    forms = [[100, 100, 300, 300], [[0, 0, 10, 10], [100, 100, 300, 300]], '[100, 100, 300, 300]',
             '[[0, 0, 10, 10], [100, 100, 300, 300]]']
    out = cls(args=Args())(['[{"bbox_2d": [200, 150, 240, 190]}]'] * 4, images=images + images[:1],
                           solution=forms)
    assert out == [1.0] * 4


def test_iou_score_example():
    # The example as README writes it.
    code = _block('The same scoring outside training:')
    scope: dict = {}
    exec(code.rsplit('\n', 2)[0], scope)  # all but the last line: the call and its documented value
    from swift_ext.scoring import iou_score
    geo = scope['geo']
    assert (geo.resized_width, geo.resized_height) == (644, 476)
    assert iou_score('[{"bbox_2d": [64.4, 47.6, 322, 238]}]', [64, 48, 320, 240], geo, 'abs') == pytest.approx(1.0)


def test_plan_output_in_readme(tmp_path):
    from swift_ext.testing.images import DEMO_ROW_MAX_PIXELS, make_dataset
    data = make_dataset(str(tmp_path / 'data'), row_max_pixels=DEMO_ROW_MAX_PIXELS)
    out = subprocess.run([sys.executable, '-m', 'swift_ext.cli', 'plan', data, '--template', 'qwen2_5_vl_geo'],
                         capture_output=True, text=True, check=True).stdout
    head = '$ swift-ext plan demo_run/data/grounding.jsonl --template qwen2_5_vl_geo\n'
    start = README.index(head) + len(head)
    documented = README[start:README.index('```', start)]
    assert out.strip() == documented.strip()


def test_geometry_api_example_prints_what_it_says():
    # Each line `expression  # literal` of README's API example evaluates to that literal.
    import ast
    code = _block('## The geometry API')
    scope: dict = {}
    checked = 0
    for line in code.splitlines():
        expr, _, comment = line.partition('  #')
        try:
            expected = ast.literal_eval(comment.strip())
        except (ValueError, SyntaxError):
            exec(line, scope)  # an assignment, or a comment that is prose
            continue
        assert eval(expr, scope) == expected, line
        checked += 1
    assert checked == 4


def test_reward_unit_test_example(tmp_path, monkeypatch):
    """Issue 26 (expected): README's way to unit-test one's own @geo_reward without a trainer runs as
    written, against README's own example reward."""
    from swift_ext import store
    store.reset()  # no template built by an earlier test stays active
    for name in ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM', 'SWIFT_EXT_COORDS'):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / 'my_plugin.py').write_text(_block('### Your own reward with geometry'))
    (tmp_path / 'test_my_plugin.py').write_text(_block('Test it without a trainer'))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop('my_plugin', None)  # another test may have imported README's plugin already
    import test_my_plugin
    images = tmp_path / 'images'
    images.mkdir()
    test_my_plugin.test_center_hit(images)


def test_score_kwargs_is_what_a_reward_receives(sample_images):
    """score_kwargs runs the reward's own code: a reward called by ms-swift gets the same arguments."""
    from swift_ext.rewards import GeoReward, score_kwargs
    seen = []

    class Spy(GeoReward):
        def score(self, completion, **kwargs):
            seen.append(kwargs)
            return 0.0

    class Args:
        template = 'qwen2_5_vl_geo'
    row = {'images': [sample_images['landscape'], sample_images['square']], 'image_index': 1,
           'solution': [1, 2, 3, 4], 'settings': 'a column named like an argument'}
    Spy(args=Args())(['x'], **{k: [v] for k, v in row.items()})
    expected = score_kwargs(row, 'qwen2_5_vl')
    assert seen[0].keys() == expected.keys() and seen[0]['dataset_settings'] == 'a column named like an argument'
    assert [g.to_dict() for g in seen[0]['image_geometry']] == [g.to_dict() for g in expected['image_geometry']]
    assert expected['image_index'] == 1 and expected['settings'].template == 'qwen2_5_vl_geo'
