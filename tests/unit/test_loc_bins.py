"""Location-token boxes (Florence-2 `<loc_N>`, PaliGemma `<locNNNN>`): the two box styles and the `bins1000` /
`bins1024` conventions, pinned to their reference code on random boxes (a box round-trips within one bin)."""
import math
import random
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from swift_ext.boxes import box_style, is_well_formed, parse_boxes
from swift_ext.geometry import BINS, ImageGeometry, stretched
from swift_ext.scoring import iou_score


def _florence_post_processor():
    from transformers.models.florence2.processing_florence2 import Florence2PostProcessor
    # quantize / dequantize / the box parser read no tokenizer: only its special-token list is built.
    return Florence2PostProcessor(config=None, tokenizer=SimpleNamespace(all_special_tokens=[]))


def _geometry(width, height, side):
    """What Florence-2 (768) or PaliGemma (224 / 448 / 896) makes of a width x height file: a stretch."""
    return stretched(width=width, height=height, resized_width=side, resized_height=side, num_tokens=1)[0]


def _random_cases(n, seed):
    rng = random.Random(seed)
    for _ in range(n):
        w, h = rng.randint(1, 5000), rng.randint(1, 5000)
        xs = sorted(rng.uniform(0, w) for _ in range(2))
        ys = sorted(rng.uniform(0, h) for _ in range(2))
        yield w, h, [xs[0], ys[0], xs[1], ys[1]]


def _on_a_bin_edge(value):  # float noise decides which side of an edge a value falls: not a disagreement
    return abs(value - round(value)) < 1e-6


# --------------------------------------------------------------------------------------- styles
@pytest.mark.parametrize('text,expected', [
    ('car<loc_10><loc_20><loc_300><loc_400>', [[10.0, 20.0, 300.0, 400.0]]),
    # one phrase, two boxes (Florence's <OD> answer for two cars), then another phrase
    ('car<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>dog<loc_9><loc_10><loc_11><loc_12>',
     [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]),
    ('<loc_30><loc_40><loc_10><loc_20>', [[10.0, 20.0, 30.0, 40.0]]),  # inverted corners reordered
    ('car<loc_1><loc_2><loc_3>', []),  # three tokens are not a box
    ('car<loc_1> <loc_2><loc_3><loc_4>', []),  # the post-processor reads adjacent tokens only
    ('<loc_' + '9' * 400 + '><loc_1><loc_2><loc_3>', []),  # overflows a float: dropped
])
def test_florence_loc_style(text, expected):
    assert parse_boxes(text) == expected
    assert box_style(text) == ('florence_loc' if expected else None)


@pytest.mark.parametrize('text,expected', [
    # y1 x1 y2 x2 as written; returned x1 y1 x2 y2
    ('<loc0020><loc0010><loc0400><loc0300> car', [[10.0, 20.0, 300.0, 400.0]]),
    ('<loc0020><loc0010><loc0400><loc0300> car ; <loc0000><loc0001><loc1023><loc1022> dog',
     [[10.0, 20.0, 300.0, 400.0], [1.0, 0.0, 1022.0, 1023.0]]),
    # a segmentation answer: the box, then 16 <segNNN> tokens
    ('<loc0020><loc0010><loc0400><loc0300>' + '<seg012>' * 16 + ' car', [[10.0, 20.0, 300.0, 400.0]]),
    ('<loc020><loc0010><loc0400><loc0300> car', []),  # four digits, as the tokens are spelled
    ('<loc0020><loc0010><loc0400> car', []),
])
def test_paligemma_loc_style(text, expected):
    assert parse_boxes(text) == expected
    assert box_style(text) == ('paligemma_loc' if expected else None)


def test_the_styles_read_the_tokens_as_the_tokenizers_spell_them():
    # transformers' PaliGemmaProcessor adds exactly these location tokens; Florence-2's are `<loc_N>`, N < 1000.
    from transformers.models.paligemma.processing_paligemma import EXTRA_TOKENS
    locs = [t for t in EXTRA_TOKENS if t.startswith('<loc')]
    assert len(locs) == 1024
    for y1, x1, y2, x2 in zip(locs, locs[256:], locs[512:], locs[768:], strict=False):
        text = f'{y1}{x1}{y2}{x2} thing'
        y1, x1, y2, x2 = (int(t[4:8]) for t in (y1, x1, y2, x2))
        assert parse_boxes(text) == [[float(x1), float(y1), float(x2), float(y2)]]
    assert parse_boxes(''.join(f'<loc_{i}>' for i in (0, 999, 999, 0))) == [[0.0, 0.0, 999.0, 999.0]]


def test_loc_styles_do_not_leak_into_the_other_styles():
    # A Qwen JSON answer with a stray location token stays JSON; a bare list beside loc tokens loses.
    assert box_style('{"bbox_2d": [1, 2, 3, 4]} <loc_1><loc_2><loc_3><loc_4>') == 'qwen2_5_json'
    assert box_style('[1, 2, 3, 4] <loc0001><loc0002><loc0003><loc0004>') == 'paligemma_loc'
    assert is_well_formed('<loc_1><loc_2><loc_3><loc_4>', ('florence_loc',))
    assert not is_well_formed('<loc_1><loc_2><loc_3><loc_4>', ('paligemma_loc',))


# ------------------------------------------------------------------- Florence-2 (bins1000)
def test_bins1000_quantizes_as_florence2s_post_processor():
    # 3,000 random boxes on random files: our bins are the post-processor's `quantize` of the file-pixel box.
    post = _florence_post_processor()
    disagree = []
    for w, h, box in _random_cases(3000, seed=1):
        ours = _geometry(w, h, 768).to_model_frame(box, 'bins1000')
        ref = post.quantize(torch.tensor([box], dtype=torch.float64), (w, h))[0].tolist()
        exact = [box[0] * 1000 / w, box[1] * 1000 / h, box[2] * 1000 / w, box[3] * 1000 / h]
        if ours != ref and not any(_on_a_bin_edge(v) for v in exact):
            disagree.append((w, h, box, ours, ref))
    assert disagree == [], disagree[:5]


def test_bins1000_decodes_to_florence2s_bin_centres():
    # Every bin on random sides: from_model_frame is `dequantize` (which truncates its result to int).
    post = _florence_post_processor()
    rng = random.Random(2)
    for _ in range(300):
        w, h = rng.randint(1, 5000), rng.randint(1, 5000)
        bins = [[rng.randint(0, 999) for _ in range(4)] for _ in range(20)]
        ref = post.dequantize(torch.tensor(bins), (w, h)).tolist()
        ours = [_geometry(w, h, 768).from_model_frame(b, 'bins1000') for b in bins]
        for box, bb, rb in zip(ours, bins, ref, strict=True):
            for o, b, s, r in zip(box, bb, (w, h, w, h), rb, strict=True):
                centre = Fraction(2 * b + 1, 2000) * s  # exact
                assert abs(o - centre) < 1e-9
                # the reference computes in float32: a centre on a whole pixel may truncate one below it
                assert int(o) == r or (centre.denominator == 1 and r == centre - 1), (w, h, b, o, r)


def test_florence2s_own_od_parser_agrees_with_parse_boxes():
    # The post-processor's `<OD>` parser on a generated answer, against parse_boxes + from_model_frame.
    post = _florence_post_processor()
    rng = random.Random(3)
    for _ in range(200):
        w, h = rng.randint(1, 4000), rng.randint(1, 4000)
        bins = [sorted(rng.sample(range(1000), 2)) for _ in range(4)]
        text = '</s><s>car' + ''.join(f'<loc_{b}>' for b in (bins[0][0], bins[1][0], bins[0][1], bins[1][1])) \
               + 'dog' + ''.join(f'<loc_{b}>' for b in (bins[2][0], bins[3][0], bins[2][1], bins[3][1])) + '</s>'
        ref = [inst['bbox'] for inst in post.parse_description_with_bboxes_from_text_and_spans(text, (w, h))]
        geo = _geometry(w, h, 768)
        ours = [[int(v) for v in geo.from_model_frame(b, 'bins1000')] for b in parse_boxes(text)]
        assert ours == ref


def test_bins1000_round_trips_within_one_bin():
    for w, h, box in _random_cases(3000, seed=4):
        geo = _geometry(w, h, 768)
        back = geo.from_model_frame(geo.to_model_frame(box, 'bins1000'), 'bins1000')
        # a bin centre is within half a bin of anything in the bin; the last bin also takes x == side
        assert all(abs(b - v) <= 0.5 * s / 1000 + 1e-9 for b, v, s in zip(back, box, (w, h, w, h), strict=True))


# --------------------------------------------------------------------- PaliGemma (bins1024)
def _big_vision_encode(box, w, h):
    """big_vision/pp/proj/paligemma/segmentation.py (refcoco_mask2str): the [ymin, xmin, ymax, xmax] fractions,
    `tf.round(bbox * 1023)` (half to even, as numpy's round), clipped to 0-1023; reordered here to x1 y1 x2 y2."""
    y1, x1, y2, x2 = np.clip(np.round(np.array([box[1] / h, box[0] / w, box[3] / h, box[2] / w]) * 1023), 0, 1023)
    return [int(x1), int(y1), int(x2), int(y2)]


def _big_vision_decode(bins, w, h):
    """big_vision/evaluators/proj/paligemma/transfers/segmentation.py: `tokens[:, :4] / 1023`, times the side."""
    return [bins[0] / 1023 * w, bins[1] / 1023 * h, bins[2] / 1023 * w, bins[3] / 1023 * h]


@pytest.mark.parametrize('side', [224, 448, 896])
def test_bins1024_is_big_visions_encoding_and_decoding(side):
    disagree = []
    for w, h, box in _random_cases(2000, seed=side):
        geo = _geometry(w, h, side)
        ours = geo.to_model_frame(box, 'bins1024')
        exact = [box[0] / w * 1023, box[1] / h * 1023, box[2] / w * 1023, box[3] / h * 1023]
        ref = _big_vision_encode(box, w, h)
        if ours != ref and not any(abs(v - math.floor(v) - 0.5) < 1e-6 for v in exact):  # a tie decided by noise
            disagree.append((w, h, box, ours, ref))
        back = geo.from_model_frame(ours, 'bins1024')
        assert back == pytest.approx(_big_vision_decode(ours, w, h), rel=1e-12, abs=1e-9)
        # round trip: within half a bin (a bin is side / 1023)
        assert all(abs(b - v) <= 0.5 * s / 1023 + 1e-9 for b, v, s in zip(back, box, (w, h, w, h), strict=True))
    assert disagree == [], disagree[:5]


def test_bins_conventions_are_the_documented_ones():
    assert BINS['bins1000'][:2] == (999, 0.5) and BINS['bins1024'][:2] == (1023, 0.0)
    geo = _geometry(1000, 500, 224)
    assert geo.to_model_frame([0, 0, 1000, 500], 'bins1024') == [0, 0, 1023, 1023]
    assert geo.to_model_frame([0, 0, 1000, 500], 'bins1000') == [0, 0, 999, 999]  # the far edge is bin 999
    assert geo.from_model_frame([0, 0, 1023, 1023], 'bins1024') == [0.0, 0.0, 1000.0, 500.0]


# ------------------------------------------------------------------------------ scoring
@pytest.mark.parametrize('coords,text', [
    ('bins1000', 'car<loc_100><loc_200><loc_500><loc_600>'),
    ('bins1024', '<loc0205><loc0102><loc0614><loc0512> car'),
])
def test_geo_iou_scores_loc_answers_in_file_pixels(coords, text):
    geo = _geometry(640, 480, 768 if coords == 'bins1000' else 224)
    [box] = parse_boxes(text)
    truth = [round(v) for v in geo.from_model_frame(box, coords)]
    assert iou_score(text, truth, geo, coords) == pytest.approx(1.0, abs=0.01)
    assert iou_score(text, [0, 0, 10, 10], geo, coords) == 0.0


def test_geometry_rejects_an_unknown_convention():
    geo = ImageGeometry(original_width=10, original_height=10, resized_width=10, resized_height=10, num_tokens=1)
    with pytest.raises(ValueError, match='bins1024'):
        geo.to_model_frame([0, 0, 1, 1], 'bins999')
