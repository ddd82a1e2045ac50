"""Tests for swift_ext.boxes: every output style, the answer region, and the bounds."""
import doctest
import random

import pytest

from swift_ext import boxes
from swift_ext.boxes import MAX_BOXES, MAX_SCAN_CHARS, box_style, is_well_formed, parse_boxes

B = [10.0, 20.0, 30.0, 40.0]
C = [50.0, 60.0, 70.0, 80.0]

PARSE_CASES = [
    # Qwen2.5-VL JSON, fenced, as the model writes it
    ('```json\n[\n  {"bbox_2d": [10, 20, 30, 40], "label": "cat"}\n]\n```', [B]),
    # Qwen2.5-VL JSON, several objects
    ('[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}, '
     '{"bbox_2d": [50, 60, 70, 80], "label": "dog"}]',
     [B, C]),
    # a single dict, no list, no fence
    ('{"bbox_2d": [10, 20, 30, 40], "label": "cat"}', [B]),
    # label before the box, python-style quotes
    ("{'label': 'cat', 'bbox_2d': [10, 20, 30, 40]}", [B]),
    # JSON inside <answer> tags after reasoning
    ('<think>the cat is left</think>'
     '<answer>```json\n[{"bbox_2d": [10,20,30,40]}]\n```</answer>', [B]),
    # bbox_2d wins over other four-number lists in the same JSON
    ('{"bbox_2d": [10, 20, 30, 40], "extra": [1, 2, 3, 4]}', [B]),
    # bare list
    ('[10, 20, 30, 40]', [B]),
    # bare list in a sentence
    ('The box is [10, 20, 30, 40].', [B]),
    # list of lists
    ('[[10, 20, 30, 40], [50, 60, 70, 80]]', [B, C]),
    # floats, a sign, an exponent, a trailing dot and a leading dot
    ('[10.0, +20, 3e1, 40.]', [B]),
    ('[.5, 0.25, 1E1, 1e+1]', [[0.5, 0.25, 10.0, 10.0]]),
    # negative coordinates are kept (scoring clips them)
    ('[-10, -20, 30, 40]', [[-10.0, -20.0, 30.0, 40.0]]),
    # Qwen2-VL box tokens with an object reference
    ('<|object_ref_start|>cat<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>', [B]),
    # Qwen2-VL box tokens with spaces, two boxes
    ('<|box_start|>( 10 , 20 ) , ( 30 , 40 )<|box_end|> and '
     '<|box_start|>(50,60),(70,80)<|box_end|>',
     [B, C]),
    # InternVL box with a reference
    ('<ref>cat</ref><box>[[10, 20, 30, 40]]</box>', [B]),
    # InternVL box holding several boxes
    ('<ref>cats</ref><box>[[10, 20, 30, 40], [50, 60, 70, 80]]</box>', [B, C]),
    # InternVL box tags win over a bare list outside them
    ('[1, 2, 3, 4] <box>[[10, 20, 30, 40]]</box>', [B]),
    # inverted corners are reordered
    ('[30, 40, 10, 20]', [B]),
    ('[30, 20, 10, 40]', [B]),
    ('<|box_start|>(30,40),(10,20)<|box_end|>', [B]),
    # zero-area boxes are syntax, returned as written
    ('[5, 5, 5, 5]', [[5.0, 5.0, 5.0, 5.0]]),
    # NaN and inf never match as numbers
    ('[NaN, 20, 30, 40]', []),
    ('[10, 20, inf, 40]', []),
    ('{"bbox_2d": [10, 20, Infinity, 40]}', []),
    # a literal that overflows to inf drops its box, the finite one stays
    ('[[10, 20, 1e309, 40], [10, 20, 30, 40]]', [B]),
    ('[1' + '0' * 400 + ', 20, 30, 40]', []),
    # 1e308 is finite here (scoring drops it if scaling overflows)
    ('[0, 0, 1e308, 1e308]', [[0.0, 0.0, 1e308, 1e308]]),
    # Arabic-Indic and full-width digits are not numbers
    ('[١٢,٣٤,٥٦,٧٨]', []),
    ('[１０, ２０, ３０, ４０]', []),
    # wrong number of numbers
    ('[10, 20, 30]', []),
    ('[10, 20, 30, 40, 50]', []),
    ('<|box_start|>(10,20),(30,40),(50,60)<|box_end|>', []),
    ('<box>[[10, 20, 30]]</box>', []),
    # truncated outputs
    ('[{"bbox_2d": [10, 20, 30', []),
    ('<box>[[10, 20, 30, 40]]', [B]),  # InternVL unclosed: falls back to the bare list
    # nothing at all
    ('', []),
    ('I cannot see a cat.', []),
]


@pytest.mark.parametrize('text, expected', PARSE_CASES)
def test_parse_boxes(text, expected):
    assert parse_boxes(text) == expected


ANSWER_CASES = [
    # the box in <think> is ignored when there is an answer
    ('<think>maybe [1, 2, 3, 4]</think><answer>[10, 20, 30, 40]</answer>', [B]),
    # answer tags with no box: no box, even if the reasoning has one
    ('<think>[1, 2, 3, 4]</think><answer>no cat</answer>', []),
    # the last answer counts
    ('<answer>[1, 2, 3, 4]</answer> wait <answer>[10, 20, 30, 40]</answer>', [B]),
    # the last answer is empty: nothing, not the earlier answer
    ('<answer>[10, 20, 30, 40]</answer><answer></answer>', []),
    # an unclosed answer (cut at max_completion_length) is read to the end
    ('<think>[1, 2, 3, 4]</think><answer>[10, 20, 30, 40]', [B]),
    # text after </answer> is ignored
    ('<answer>[10, 20, 30, 40]</answer> or [1, 2, 3, 4]', [B]),
    # no answer tags: only the text after </think>
    ('<think>[1, 2, 3, 4]</think>[10, 20, 30, 40]', [B]),
    # a lone </answer> is not an answer
    ('[10, 20, 30, 40]</answer>', [B]),
]


@pytest.mark.parametrize('text, expected', ANSWER_CASES)
def test_answer_region(text, expected):
    assert parse_boxes(text) == expected


STYLE_CASES = [
    ('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', 'qwen2_5_json'),
    ('[1, 2, 3, 4]', 'bare_list'),
    ('[[1, 2, 3, 4], [5, 6, 7, 8]]', 'bare_list'),
    ('<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>',
     'qwen2_box_tokens'),
    ('<ref>a</ref><box>[[1, 2, 3, 4]]</box>', 'internvl_box'),
    ('<|begin_of_box|>[1, 2, 3, 4]<|end_of_box|>', 'glm_box'),
    ('<|ref|>a<|/ref|><|det|>[[1, 2, 3, 4], [5, 6, 7, 8]]<|/det|>', 'deepseek_det'),
    ('<|det|>[1, 2, 3]<|/det|> [1, 2, 3, 4]', 'bare_list'),  # an empty det tag does not claim the list after it
    ('Total(1,2),(3,4)', 'hunyuan_spot'),
    ('Total(1,2),(3,4) [5, 6, 7, 8]', 'bare_list'),  # tried last: an earlier style that reads a box wins
    # a style counts only if it yields a finite four-number box
    ('{"bbox_2d": [1, 2, NaN, 4]}', None),
    ('<box>[[1, 2, 3]]</box>', None),
    ('', None),
]


@pytest.mark.parametrize('text, expected', STYLE_CASES)
def test_box_style(text, expected):
    assert box_style(text) == expected


WELL_FORMED_CASES = [
    # each family's own style
    ('qwen2_vl', '<|box_start|>(1,2),(3,4)<|box_end|>', True),
    ('qwen2_5_vl', '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]\n```', True),
    ('qwen2_5_vl', '[1, 2, 3, 4]', True),
    ('qwen3_vl', '[{"bbox_2d": [100, 200, 300, 400], "label": "a"}]', True),
    ('internvl', '<ref>a</ref><box>[[1, 2, 3, 4]]</box>', True),
    ('deepseek_vl2', '<|ref|>cat<|/ref|><|det|>[[120, 80, 560, 710]]<|/det|>', True),
    ('deepseek_ocr', '<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# Title', True),
    # another family's style
    ('qwen2_vl', '[{"bbox_2d": [1, 2, 3, 4]}]', False),
    ('internvl', '[1, 2, 3, 4]', False),
    ('qwen2_5_vl', '<box>[[1, 2, 3, 4]]</box>', False),
    ('qwen2_5_vl', '<|det|>[[1, 2, 3, 4]]<|/det|>', False),
    ('internvl', '<|det|>[[1, 2, 3, 4]]<|/det|>', False),
    # only in the reasoning
    ('qwen2_5_vl', '<think>[1, 2, 3, 4]</think><answer>none</answer>', False),
    # malformed
    ('qwen2_5_vl', '[{"bbox_2d": [1, 2, 3]}]', False),
    ('qwen2_vl', '<|box_start|>(1,2)<|box_end|>', False),
]


@pytest.mark.parametrize('family, text, expected', WELL_FORMED_CASES)
def test_is_well_formed(family, text, expected):
    from swift_ext.settings import default_settings
    template = 'internvl3_5' if family == 'internvl' else family  # deepseek_*: a `_geo` parent as the others
    assert is_well_formed(text, default_settings(template).box_styles) is expected


@pytest.mark.parametrize('styles', ['qwen2_5_json', (), ('llava',)])
def test_is_well_formed_unknown_style(styles):
    with pytest.raises(ValueError, match=r'`styles` should be a non-empty list of names from'):
        is_well_formed('[1, 2, 3, 4]', styles)


class TestBounds:
    def test_box_cap(self):
        text = '[' + ', '.join(['[1, 2, 3, 4]'] * 10_000) + ']'
        assert len(parse_boxes(text)) == MAX_BOXES

    def test_box_cap_argument(self):
        assert parse_boxes('[[1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9]]', max_boxes=2) == \
            [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]

    @pytest.mark.parametrize('value', [0, -1, 1.5, True, None])
    def test_box_cap_validated(self, value):
        with pytest.raises(ValueError, match='`max_boxes` should be a positive integer'):
            parse_boxes('[1, 2, 3, 4]', max_boxes=value)

    def test_scan_limit(self):
        # a box past the first MAX_SCAN_CHARS characters of the region is not read
        assert parse_boxes('x' * MAX_SCAN_CHARS + '[1, 2, 3, 4]') == []
        assert parse_boxes('x' * (MAX_SCAN_CHARS - 20) + '[1, 2, 3, 4]') == [[1.0, 2.0, 3.0, 4.0]]

    def test_scan_limit_applies_to_the_answer(self):
        # a long reasoning does not push the answer out of reach
        text = '<think>' + 'x' * 10 * MAX_SCAN_CHARS + '</think><answer>[1, 2, 3, 4]</answer>'
        assert parse_boxes(text) == [[1.0, 2.0, 3.0, 4.0]]

    def test_not_a_string(self):
        with pytest.raises(TypeError, match='`text` should be a str, got NoneType'):
            parse_boxes(None)


def test_doctests():
    result = doctest.testmod(boxes)
    assert result.attempted > 0 and result.failed == 0


def test_deepseek_det_reads_every_box_of_the_tag_and_only_inside_it():
    text = ('<|ref|>cat<|/ref|><|det|>[[10, 20, 30, 40], [50, 60, 70, 80]]<|/det|> and '
            '<|ref|>dog<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>')
    assert parse_boxes(text) == [[10, 20, 30, 40], [50, 60, 70, 80], [1, 2, 3, 4]]
    # The tags of the other styles still win first, as before the style existed.
    assert box_style('<ref>a</ref><box>[[1, 2, 3, 4]]</box><|det|>[[5, 6, 7, 8]]<|/det|>') == 'internvl_box'
    # Unclosed tags claim nothing (the lists are then read as bare lists), in one pass: [^<]* stops at '<'.
    assert parse_boxes('<|det|>[[1, 2, 3, 4]]' * 2000) == [[1, 2, 3, 4]] * 100


def _scan_without_hunyuan_spot(text):
    """What parse_boxes / box_style gave before the last style, ``hunyuan_spot``, existed."""
    assert boxes.STYLES[-1] == 'hunyuan_spot'
    region = boxes.answer_region(text)[:MAX_SCAN_CHARS]
    for style in boxes.STYLES[:-1]:
        found = boxes._boxes_in_style(region, style, MAX_BOXES)
        if found:
            return style, found
    return None, []


def test_existing_styles_read_what_they_read_before():
    # Every case of the existing style tests, and random answers of each earlier style with spotting text
    # mixed in: wherever an earlier style found a box, the result is the same; elsewhere only a spotting
    # pair can add one.
    rng = random.Random(7)
    texts = [t for t, _ in PARSE_CASES + ANSWER_CASES + STYLE_CASES]
    samples = ['[{"bbox_2d": [1, 2, 3, 4], "label": "a(5,6),(7,8)"}]', '<|box_start|>(1,2),(3,4)<|box_end|>',
               '<ref>a(5,6),(7,8)</ref><box>[[1, 2, 3, 4]]</box>', '<|begin_of_box|>[1, 2, 3, 4]<|end_of_box|>',
               '<|ref|>a<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>', 'car<loc_1><loc_2><loc_3><loc_4>',
               '<loc0002><loc0001><loc0004><loc0003> car', '[1, 2, 3, 4]', 'Total(10,20),(30,40)']
    for _ in range(3000):
        texts.append(''.join(rng.choice(samples) + rng.choice(['', ' ', '\n', 'x']) for _ in range(rng.randint(1, 4))))
    for text in texts:
        old_style, old_boxes = _scan_without_hunyuan_spot(text)
        if old_style is not None:
            assert (box_style(text), parse_boxes(text)) == (old_style, old_boxes), text
        else:
            assert box_style(text) in (None, 'hunyuan_spot'), text
