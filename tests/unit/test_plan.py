"""`swift-ext plan`: its numbers equal `settings.predict` image by image, bad rows are named by
row number, and (with a tiny local checkpoint) they equal what ms-swift's template encodes."""
import dataclasses
import json
import os
from collections import Counter

import pytest
from PIL import Image

from swift_ext.cli import plan
from swift_ext.cli.clamps import counts
from swift_ext.cli.dataset import row_images
from swift_ext.cli.plan import run, work
from swift_ext.geometry import GeometryError
from swift_ext.settings import default_settings

# (width, height) of the good images; formats alternate PNG / JPEG.
SIZES = [(50, 60), (640, 480), (1920, 1080), (300, 2000), (27, 29), (448, 448), (3000, 200),
         (1000, 1000), (64, 640), (2500, 2400), (100, 10), (777, 333)]


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """A jsonl dataset: good rows, per-row limits, two-image and imageless rows, and bad rows."""
    root = tmp_path_factory.mktemp('plan')
    (root / 'imgs').mkdir()
    rows = []
    for i, (w, h) in enumerate(SIZES):
        name = f'imgs/{i}.{"png" if i % 2 else "jpg"}'
        Image.new('RGB', (w, h), (i * 20, 90, 30)).save(root / name)
        rows.append({'messages': [{'role': 'user', 'content': '<image>box?'}], 'images': [name]})
    Image.new('RGB', (1, 300)).save(root / 'imgs/thin.png')
    (root / 'imgs/corrupt.png').write_bytes(b'\x89PNG but not really')
    rows += [
        {'messages': [], 'images': ['imgs/1.png'], 'chat_template_kwargs': {'max_pixels': 50176}},
        {'messages': [], 'images': ['imgs/2.jpg', 'imgs/3.png']},  # two images
        {'messages': [], 'image': str(root / 'imgs/5.png')},  # the single-image key, absolute
        {'messages': [{'role': 'user', 'content': 'no image'}]},
        {'messages': [], 'images': ['imgs/missing.png']},  # row 17
        {'messages': [], 'images': ['imgs/corrupt.png']},  # row 18
        {'messages': [], 'images': [{'path': 'imgs/thin.png'}]},  # row 19: 1:300
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(19, '{"messages": [')  # row 20: not JSON
    path = root / 'train.jsonl'
    path.write_text('\n'.join(lines) + '\n')
    return str(path), rows


def expected(rows, base_dir, settings):
    """What plan should report, computed image by image with settings.predict."""
    tokens, per_sample, failures, clamps = Counter(), Counter(), [], []
    for number, row in enumerate(rows, 1):
        if number >= 20:
            number += 1  # the bad JSON line sits at row 20
        images = row_images(row)
        if not images:
            continue
        total, failed = 0, False
        for index, src in enumerate(images):
            src = src['path'] if isinstance(src, dict) else src
            path = os.path.join(base_dir, src)
            try:
                with Image.open(path) as im:
                    w, h = im.size
                geo, clamped = settings.predict(width=w, height=h,
                                                row_kwargs=row.get('chat_template_kwargs'))
            except (OSError, GeometryError):
                failures.append((number, index))
                failed = True
                continue
            tokens[geo.num_tokens] += 1
            total += geo.num_tokens
            clamps.append(clamped)
        if not failed:
            per_sample[total] += 1
    return tokens, per_sample, failures, counts(clamps)


# (template, flags, environment): each a way ms-swift is told its limits.
CASES = [
    ('qwen2_5_vl_geo', {}, {}),
    ('qwen2_5_vl_geo', {'max_pixels': 100_000}, {}),  # ms-swift's --max_pixels pre-rescale
    ('qwen2_5_vl_geo', {}, {'MAX_PIXELS': '200704', 'MIN_PIXELS': '50176'}),
    ('qwen2_5_vl_geo', {'min_pixels': 100_352}, {'MIN_PIXELS': '3136'}),  # the flag wins
    ('qwen2_vl_geo', {}, {}),
    ('qwen3_vl_geo', {}, {'MAX_PIXELS': '262144'}),
    ('internvl3_5_geo', {}, {}),
    ('internvl3_5_geo', {'max_num': 4}, {}),
    ('internvl2_5_geo', {'max_pixels': 200_000}, {'MAX_NUM': '6'}),
    ('internvl_hf_geo', {}, {}),
]


@pytest.mark.parametrize('template,flags,env', CASES)
def test_plan_equals_predict(dataset, template, flags, env, monkeypatch):
    path, rows = dataset
    monkeypatch.chdir(os.path.dirname(path))  # relative image paths resolve as ms-swift's do: cwd first
    for name in ('MAX_PIXELS', 'MIN_PIXELS', 'MAX_NUM', 'INPUT_SIZE'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = work.plan_settings(template, **flags)
    stats = run.plan_dataset(path, settings, sweep=[], workers=1)
    tokens, per_sample, failures, clamped = expected(rows, os.path.dirname(path), settings)
    assert stats.tokens_per_image == tokens
    assert stats.tokens_per_sample == per_sample
    assert stats.clamped == clamped
    # Every failure, with its row number (and the unparsable row 20, which has no image index).
    assert [(r, i) for r, i, _, _ in stats.failures] == sorted(failures + [(20, None)])
    assert stats.rows == len(rows) + 1
    assert stats.images == sum(len(row_images(r)) for r in rows)


def test_bad_rows_are_named(dataset, monkeypatch):
    path, _ = dataset
    monkeypatch.chdir(os.path.dirname(path))
    stats = run.plan_dataset(path, work.plan_settings('qwen2_5_vl_geo'), sweep=[], workers=1)
    messages = {row: message for row, _, _, message in stats.failures}
    assert 'does not exist' in messages[17]
    assert 'not a readable image' in messages[18]
    assert 'aspect ratio must be at most 200' in messages[19]
    assert 'unreadable row' in messages[20]
    # InternVL tiles a 1:300 image without complaint: only the first three fail there.
    stats = run.plan_dataset(path, work.plan_settings('internvl3_5_geo'), sweep=[], workers=1)
    assert sorted(r for r, _, _, _ in stats.failures) == [17, 18, 20]


def test_workers_give_the_same_numbers(dataset, monkeypatch):
    path, _ = dataset
    monkeypatch.chdir(os.path.dirname(path))
    settings = work.plan_settings('qwen2_5_vl_geo')
    one = run.plan_dataset(path, settings, workers=1)
    two = run.plan_dataset(path, settings, workers=2)
    assert one == two


@pytest.mark.parametrize('template,applied_as', [('qwen2_5_vl_geo', 'max_pixels'),
                                                  ('internvl3_5_geo', 'swift_max_pixels')])
def test_sweep_totals(dataset, template, applied_as, monkeypatch):
    path, rows = dataset
    monkeypatch.chdir(os.path.dirname(path))
    settings = work.plan_settings(template)
    values = [200704, 1003520]
    stats = run.plan_dataset(path, settings, sweep=values, workers=1)
    for value in values:
        swept = dataclasses.replace(settings, **{applied_as: value})  # both values are multiples of 28**2
        tokens = expected(rows, os.path.dirname(path), swept)[0]
        assert stats.sweep[value][0] == sum(t * n for t, n in tokens.items())


def test_env_is_read_like_ms_swift():
    env = {'MAX_PIXELS': '200704', 'MIN_PIXELS': '6272', 'MAX_NUM': '3', 'INPUT_SIZE': '224'}
    qwen = work.plan_settings('qwen2_5_vl_geo', env=env)
    assert (qwen.max_pixels, qwen.min_pixels, qwen.swift_max_pixels) == (200704, 6272, None)
    assert work.plan_settings('qwen2_5_vl_geo', min_pixels=12544, env=env).min_pixels == 12544
    ivl = work.plan_settings('internvl3_5_geo', max_pixels=500_000, env=env)
    assert (ivl.max_num, ivl.image_size, ivl.tokens_per_tile, ivl.swift_max_pixels) == (3, 224, 64, 500_000)
    # The transformers-native InternVL template does not read MAX_NUM; only the flag changes it.
    assert work.plan_settings('internvl_hf_geo', env=env).max_num == default_settings('internvl_hf').max_num
    assert work.plan_settings('internvl_hf_geo', max_num=2, env=env).max_num == 2
    with pytest.raises(ValueError, match='MAX_PIXELS must be an integer'):
        work.plan_settings('qwen2_5_vl_geo', env={'MAX_PIXELS': 'lots'})


def test_json_list_dataset_and_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv('MAX_PIXELS', raising=False)
    monkeypatch.chdir(tmp_path)
    Image.new('RGB', (640, 480)).save(tmp_path / 'a.png')
    rows = [{'images': ['a.png']}, {'image': 'a.png'}, {'images': ['nope.png']}]
    (tmp_path / 'data.json').write_text(json.dumps(rows))
    code = plan.main([str(tmp_path / 'data.json'), '--template', 'qwen2_5_vl_geo', '--json',
                      '--sweep', '200704,12845056', '--workers', '1'])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    one = default_settings('qwen2_5_vl').predict(width=640, height=480)[0].num_tokens
    assert out['visual_tokens_total'] == 2 * one
    assert out['visual_tokens_per_image']['max'] == one
    assert [f['row'] for f in out['failures']] == [3]
    assert [s['pixels'] for s in out['sweep']] == [200704, 12845056]
    assert out['sweep'][1]['visual_tokens_total'] == 2 * one


def test_cli_refuses_bad_input(tmp_path, capsys):
    assert plan.main([str(tmp_path / 'none.jsonl'), '--template', 'qwen2_5_vl_geo']) == 2
    with pytest.raises(SystemExit):
        plan.main([str(tmp_path / 'none.jsonl'), '--template', 'qwen2_5_vl_geo', '--sweep', 'a,b'])
    assert plan.main([str(tmp_path / 'none.jsonl'), '--template', 'llava_geo']) == 2
    assert 'template must be one of' in capsys.readouterr().err


# --- against ms-swift's real template, on a tiny local checkpoint ---------------------------------
def _real_tokens(template, family, image, row_kwargs):
    encoded = template.encode({'messages': [{'role': 'user', 'content': '<image>box?'},
                                            {'role': 'assistant', 'content': 'ok'}],
                               'images': [image], 'chat_template_kwargs': row_kwargs})
    if 'image_grid_thw' in encoded:
        merge = template.processor.image_processor.merge_size ** 2
        return int(encoded['image_grid_thw'][0].prod()) // merge
    ctx = template.tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>')
    return sum(1 for t in encoded['input_ids'] if t == ctx)


@pytest.mark.parametrize('family,model_type,swift_max_pixels', [
    ('qwen2_5_vl', 'qwen2_5_vl', None), ('qwen2_5_vl', 'qwen2_5_vl', 100_000),
    ('internvl_hf', 'internvl', None), ('internvl_hf', 'internvl', 200_000)])
def test_plan_matches_template_encode(tiny_model, dataset, family, model_type, swift_max_pixels,
                                      monkeypatch):
    for name in ('MAX_PIXELS', 'MIN_PIXELS', 'MAX_NUM'):
        monkeypatch.delenv(name, raising=False)
    # The template registers its settings and records process-wide; keep them to this test.
    from swift_ext import store
    store.reset()
    from swift import get_processor, get_template

    import swift_ext.plugin  # noqa: F401  (registers the _geo templates)
    processor = get_processor(tiny_model(family), model_type=model_type)
    template = get_template(processor, template_type=f'{family}_geo', max_pixels=swift_max_pixels)
    path, rows = dataset
    monkeypatch.chdir(os.path.dirname(path))
    settings = work.plan_settings(f'{family}_geo', max_pixels=swift_max_pixels)
    stats = run.plan_dataset(path, settings, sweep=[], workers=1)
    real = Counter()
    for row in rows:
        images, kwargs = row_images(row), row.get('chat_template_kwargs') or {}
        for src in images:
            src = os.path.join(os.path.dirname(path), src['path'] if isinstance(src, dict) else src)
            try:
                real[_real_tokens(template, family, src, kwargs)] += 1
            except Exception:  # the rows plan lists as failing
                continue
    assert stats.tokens_per_image == real


# --- every environment variable ms-swift / qwen-vl-utils read, against the real template -----------
# ms-swift reads MAX_PIXELS / MIN_PIXELS when the processor loads (turning them into qwen-vl-utils'
# IMAGE_*_TOKEN_NUM, only where those are unset) and patches qwen-vl-utils' module constants once per
# process, so each case is its own process: one launcher imports swift once and forks a child per case.
ENV_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'programs', 'plan_env_cases.py')
ENV_VARS = ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM', 'IMAGE_MIN_TOKEN_NUM', 'MAX_RATIO',
            'SPATIAL_MERGE_SIZE', 'ROOT_IMAGE_DIR')
ENV_CASES = {
    'none': {},
    'max_pixels': {'MAX_PIXELS': '200704'},
    'min_pixels': {'MIN_PIXELS': '401408'},
    'image_max_token_num': {'IMAGE_MAX_TOKEN_NUM': '512'},  # a 4032x3024 phone photo: 728x532, 494 tokens
    'image_min_token_num': {'IMAGE_MIN_TOKEN_NUM': '600'},
    'token_num_wins_over_pixels': {'IMAGE_MAX_TOKEN_NUM': '300', 'MAX_PIXELS': '802816'},
    'max_ratio': {'MAX_RATIO': '400'},  # a 1:300 image passes qwen-vl-utils' ratio check
}
ENV_SIZES = [(4032, 3024), (640, 480), (50, 60), (1920, 1080), (300, 2000), (1, 300)]


@pytest.fixture(scope='module')
def env_runs(tiny_model, tmp_path_factory):
    """``(dataset path, {case: {image: real tokens or 'error: ...'}})`` from the real template."""
    import subprocess
    import sys
    root = tmp_path_factory.mktemp('plan_env')
    images = []
    for w, h in ENV_SIZES:
        path = root / f'{w}x{h}.png'
        Image.new('RGB', (w, h), (90, 20, 20)).save(path)
        images.append(str(path))
    dataset = root / 'data.jsonl'
    dataset.write_text(''.join(json.dumps({'messages': [], 'images': [p]}) + '\n' for p in images))
    out = root / 'out'
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run([sys.executable, ENV_LAUNCHER, tiny_model('qwen2_5_vl'), json.dumps(ENV_CASES),
                           json.dumps(images), str(out)], capture_output=True, text=True, timeout=600, env=env)
    results = {name: json.loads((out / f'{name}.json').read_text()) for name in ENV_CASES
               if (out / f'{name}.json').exists()}
    assert set(results) == set(ENV_CASES), proc.stderr[-3000:]
    return str(dataset), results


@pytest.mark.parametrize('case', list(ENV_CASES))
def test_env_variable_plan_equals_real_template(env_runs, case, monkeypatch):
    dataset, results = env_runs
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV_CASES[case].items():
        monkeypatch.setenv(name, value)
    stats = run.plan_dataset(dataset, work.plan_settings('qwen2_5_vl_geo'), sweep=[], workers=1)
    real = results[case]
    expected = Counter(t for t in real.values() if isinstance(t, int))
    assert stats.tokens_per_image == expected
    failing = sorted(os.path.basename(n) for _, _, n, _ in stats.failures)
    assert failing == sorted(os.path.basename(p) for p, t in real.items() if not isinstance(t, int))


def test_phone_photo_under_image_max_token_num(env_runs):
    # Measured with ms-swift: 4032x3024 under IMAGE_MAX_TOKEN_NUM=512 is 728x532, 494 tokens, in the real template.
    _, results = env_runs
    photo = next(p for p in results['image_max_token_num'] if p.endswith('4032x3024.png'))
    assert results['image_max_token_num'][photo] == 494
    settings = work.plan_settings('qwen2_5_vl_geo', env={'IMAGE_MAX_TOKEN_NUM': '512'})
    geo = settings.predict(width=4032, height=3024)[0]
    assert (geo.resized_width, geo.resized_height, geo.num_tokens) == (728, 532, 494)


@pytest.mark.parametrize('env', [{'MAX_NUM': '6'}, {'INPUT_SIZE': '224'}, {'MAX_NUM': '2', 'INPUT_SIZE': '336'}, {}])
def test_internvl_env_equals_ms_swift_tiling(env, monkeypatch):
    # No tiny checkpoint runs ms-swift's own InternVL template here (remote code), so the template's
    # own steps are run: it reads MAX_NUM / INPUT_SIZE with get_env_args and tiles with transform_image.
    from swift.template.vision_utils import transform_image
    from swift.utils import get_env_args
    for name in ('MAX_NUM', 'INPUT_SIZE'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    input_size, max_num = get_env_args('input_size', int, 448), get_env_args('max_num', int, 12)
    settings = work.plan_settings('internvl3_5_geo')
    for w, h in [(640, 480), (1920, 1080), (300, 2000), (50, 60)]:
        tiles = transform_image(Image.new('RGB', (w, h)), input_size, max_num).shape[0]
        geo = settings.predict(width=w, height=h)[0]
        assert (geo.num_tiles, geo.num_tokens) == (tiles, tiles * int((input_size // 14) ** 2 * 0.25)), (w, h)
