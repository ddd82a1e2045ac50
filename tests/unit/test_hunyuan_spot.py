"""The ``hunyuan_spot`` box style (HunyuanOCR text spotting: ``text(x1,y1),(x2,y2)`` in 0-1000 of the image).

Pinned to what Tencent-Hunyuan/HunyuanOCR documents (commit b138959): the README's spotting task, and
``Hunyuan-OCR-master/utils.py``, whose ``process_spotting_response`` reads each box as the integer pair
``(x1,y1),(x2,y2)`` right after its text and whose ``denormalize_coordinates`` maps ``x * width / 1000``;
and to the cases Tencent's RL spotting scorer (``train_verl/reward/task_scorers/spotting.py``) documents:
text may hold parentheses, a pair with no text before it is not a box. That every earlier style reads what
it read before is tested in test_boxes.py.
"""
import random
import time

import pytest

from swift_ext import boxes
from swift_ext.boxes import MAX_BOXES, MAX_SCAN_CHARS, STYLES, box_style, is_well_formed, parse_boxes
from swift_ext.scoring import iou_score
from swift_ext.settings import default_settings


def test_the_style_is_tried_last():
    assert STYLES[-1] == 'hunyuan_spot' and STYLES[:-1] == (
        'qwen2_box_tokens', 'internvl_box', 'qwen2_5_json', 'glm_box', 'deepseek_det', 'florence_loc',
        'paligemma_loc', 'bare_list')


SPOT_CASES = [
    ('INVOICE(112,40),(388,72)', [[112, 40, 388, 72]]),
    # back to back, as the model writes lines
    ('Total(96,880),(402,910)Paid(500,880),(640,910)', [[96, 880, 402, 910], [500, 880, 640, 910]]),
    # text holding parentheses keeps its box (the scorer's "ATLANTA (AP) Second(1,2),(3,4)")
    ('ATLANTA (AP) Second(1,2),(3,4)', [[1, 2, 3, 4]]),
    ('金额(小写)(10,20),(30,40)', [[10, 20, 30, 40]]),
    # a trailing pair with no text of its own is not a box (the scorer's "Hello(1,2),(3,4),(5,6),(7,8)")
    ('Hello(1,2),(3,4),(5,6),(7,8)', [[1, 2, 3, 4]]),
    # a pair with no text at all is not a box
    ('(1,2),(3,4)', []),
    (' , ((1,2),(3,4)', []),
    # integers only, no spaces: what the model writes and Tencent's reader reads
    ('cat(1.5,2),(3,4)', []),
    ('cat(1, 2),(3, 4)', []),
    ('cat(-1,2),(3,4)', []),
    ('cat(１０,２),(3,4)', []),  # full-width digits are not numbers
    # corners reordered, as every style
    ('cat(30,40),(10,20)', [[10, 20, 30, 40]]),
    # inside an answer, the reasoning ignored
    ('<think>maybe x(1,2),(3,4)</think><answer>Total(10,20),(30,40)</answer>', [[10, 20, 30, 40]]),
    # Qwen2-VL markup is not a spotting answer, even malformed
    ('<|box_start|>(10,20),(30,40),(50,60)<|box_end|>', []),
    ('<|box_start|> (10,20),(30,40)', []),
]


@pytest.mark.parametrize('text,expected', SPOT_CASES)
def test_spotting_answers(text, expected):
    assert parse_boxes(text) == [[float(v) for v in box] for box in expected]
    assert box_style(text) == ('hunyuan_spot' if expected else None)


def _spotting_answer(rng, n):
    """A random spotting answer: n lines of text (parentheses, CJK, digits, commas) and their boxes."""
    pieces, truth = [], []
    alphabet = 'abcXYZ 0123456789,.:;-_()[]发票金额 ()'
    for _ in range(n):
        text = ''.join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        if not any(c not in ' (),' for c in text):
            text += 'x'
        x1, x2 = sorted(rng.sample(range(1001), 2))
        y1, y2 = sorted(rng.sample(range(1001), 2))
        if rng.random() < 0.2:
            x1, x2 = x2, x1  # written inverted: read back ordered
        pieces.append(f'{text}({x1},{y1}),({x2},{y2})')
        truth.append([float(min(x1, x2)), float(y1), float(max(x1, x2)), float(y2)])
    return ''.join(pieces), truth


def test_random_spotting_answers_read_back_exactly():
    rng = random.Random(29)
    checked = 0
    for _ in range(3000):
        text, truth = _spotting_answer(rng, rng.randint(1, 8))
        if '[' in text and boxes._FLAT_LIST_RE.search(text):
            continue  # a four-number list in a line's text: bare_list, tried first, reads it
        assert parse_boxes(text) == truth, text
        assert box_style(text) == 'hunyuan_spot'
        checked += 1
    assert checked > 2900


@pytest.mark.parametrize('text', [
    'a' * MAX_SCAN_CHARS,  # text, never a pair
    '(1,2),(3,4)' * (MAX_SCAN_CHARS // 11),  # pairs, never text
    '(' * MAX_SCAN_CHARS,
    '(1' + '1' * (MAX_SCAN_CHARS - 2),
    '((1,2),(' * (MAX_SCAN_CHARS // 8),
    '<|box_start|>' * (MAX_SCAN_CHARS // 13),
    ('<|box_start|>' * 100 + 'x(1,2),(3,4)') * (MAX_SCAN_CHARS // 1312),
])
def test_hostile_answers_take_one_pass(text):
    start = time.perf_counter()
    parse_boxes(text)
    assert time.perf_counter() - start < 0.5


def test_the_cap_on_boxes_holds():
    assert len(parse_boxes('w(1,2),(3,4)' * 500)) == MAX_BOXES


def test_is_well_formed_for_hunyuan_ocr_and_not_for_others():
    hunyuan = default_settings('hunyuan_ocr_geo').box_styles
    assert is_well_formed('INVOICE(112,40),(388,72)', hunyuan)
    assert not is_well_formed('[112, 40, 388, 72]', hunyuan)
    assert not is_well_formed('INVOICE(112,40),(388,72)', default_settings('qwen2_5_vl_geo').box_styles)


@pytest.mark.parametrize('width,height', [(640, 480), (1000, 40), (37, 3001), (4000, 3000)])
def test_norm1000_is_tencents_denormalization(width, height):
    # Hunyuan-OCR-master/utils.py denormalize_coordinates: x * width / 1000 (then int() for drawing).
    geo, _ = default_settings('hunyuan_ocr_geo').predict(width=width, height=height)
    rng = random.Random(width * height)
    for _ in range(200):
        box = [rng.randint(0, 1000) for _ in range(4)]
        expected = [box[0] * width / 1000, box[1] * height / 1000, box[2] * width / 1000, box[3] * height / 1000]
        assert geo.from_model_frame(box, 'norm1000') == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_geo_iou_scores_a_spotting_answer_in_file_pixels():
    geo, _ = default_settings('hunyuan_ocr_geo').predict(width=1000, height=500)
    text = 'INVOICE(100,200),(400,600)'
    assert iou_score(text, [100, 100, 400, 300], geo, 'norm1000') == pytest.approx(1.0)
    assert iou_score(text, [600, 100, 900, 300], geo, 'norm1000') == 0.0
