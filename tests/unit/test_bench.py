"""`swift-ext bench`: the quick run works end to end and reports well-formed figures.

Timing goals are never asserted here: on a shared test machine they are noise. What is
checked is the structure of the table and the JSON, and that every figure is a positive,
finite number; plus the pure helpers the figures rest on.
"""
import json
import math
import os
import subprocess
import sys

import pytest

from swift_ext.cli.bench import BENCHES, NAMES, Figure, Goal, build_parser, format_table
from swift_ext.cli.bench.grpo import step_seconds
from swift_ext.cli.bench.measure import interleaved, png_header, steady_heap
from swift_ext.cli.bench.reward import regex_iou
from swift_ext.cli.bench.scale import write_geometry_log
from swift_ext.cli.bench.template import AA_PARENT, VIDEO_PARENTS, family_parents
from swift_ext.families import family_of
from swift_ext.images import read_image_size
from swift_ext.testing.tiny import parents

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Figures that carry a published goal: (bench, start of the figure name).
GOAL_FIGURES = [
    (1, 'qwen2_5_vl: _geo / parent'), (1, 'internvl_hf: _geo / parent'),
    (2, 'fetch_image / header'), (3, 'iou_score / baseline throughput, single box'), (3, 'iou_score, mix'),
    (4, 'geo / plain step time'), (5, 'review'), (5, 'plan'),
    (6, 'fetch_video / header, short clips'), (6, 'fetch_video / header, 60 s clip'), (6, 'plan'),
]


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    """One `swift-ext bench --quick` in a subprocess: (stdout, the JSON record)."""
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
           'HF_DATASETS_OFFLINE': '1', 'MODELSCOPE_OFFLINE': '1', 'USE_HF': '1'}
    proc = subprocess.run([sys.executable, '-m', 'swift_ext.cli', 'bench', '--quick', '--out', str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text())


class TestQuickRun:
    def test_table_lists_every_benchmark(self, quick_run):
        stdout, record = quick_run
        lines = stdout.splitlines()
        assert lines[0].split()[:2] == ['#', 'figure']
        assert {'min', 'median', 'max', 'result'} <= set(lines[0].split())
        rows = [line for line in lines[2:] if line[:1].isdigit()]
        assert {int(row.split()[0]) for row in rows} == set(BENCHES)
        assert len(rows) == len(record['figures'])

    def test_json_describes_command_and_machine(self, quick_run):
        _, record = quick_run
        assert record['quick'] is True
        assert record['command'].startswith('swift-ext bench') and '--quick' in record['command']
        machine = record['machine']
        assert machine['nproc'] >= 1 and machine['cpu'] and machine['memory_gib'] > 0
        assert machine['versions']['ms-swift'] and machine['versions']['torch']
        assert set(record['notes']) == set(NAMES.values())

    def test_every_figure_is_positive_and_finite(self, quick_run):
        _, record = quick_run
        for fig in record['figures']:
            values = fig['values'] + [fig['min'], fig['median'], fig['max']]
            # a difference of two times (benchmark 1's "_geo - parent") may be below zero; nothing else
            difference = fig['name'].endswith(' - parent, wall time')
            assert all(isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or difference)
                       for v in values), fig
            assert fig['min'] <= fig['median'] <= fig['max'], fig
            assert fig['unit'] and fig['name']

    @pytest.mark.parametrize('bench,prefix', GOAL_FIGURES)
    def test_goal_figures_are_judged(self, quick_run, bench, prefix):
        # Each published goal is present and judged (pass or fail, not asserted here).
        _, record = quick_run
        judged = [f for f in record['figures'] if f['bench'] == bench and f['name'].startswith(prefix)
                  and f['goal'] is not None]
        assert judged, (bench, prefix)
        for fig in judged:
            assert isinstance(fig['passed'], bool)
            assert fig['goal']['op'] in ('<=', '>=', '<') and fig['goal']['threshold'] > 0

    def test_template_overhead_covers_every_family(self, quick_run):
        # benchmark 1 measures one parent per family that has a tiny checkpoint, with a goal each
        _, record = quick_run
        judged = {f['name'].split(':')[0] for f in record['figures']
                  if f['bench'] == 1 and f['name'].endswith('_geo / parent, wall time') and f['goal']}
        families = {family_of(p)[0].name for p in parents()}
        assert {family_of(p.split(' ')[0])[0].name for p in judged} == families
        assert record['failures'] == []
        # one family also with the log off, and an A/A control (no goal) that shows the method's floor
        names = [f['name'] for f in record['figures'] if f['bench'] == 1]
        assert f'{AA_PARENT} (log off): _geo / parent, wall time' in names
        [aa] = [f for f in record['figures'] if f['name'] == f'{AA_PARENT} (A/A: parent / parent): A/A, wall time']
        assert aa['goal'] is None and all(0.5 < v < 2 for v in aa['values'])
        # each ratio also as microseconds a sample, on the same pairs, without a goal
        extra = {f['name']: f for f in record['figures'] if f['bench'] == 1 and f['unit'] == 'us/sample'}
        assert f'{AA_PARENT}: _geo - parent, wall time' in extra
        assert f'{AA_PARENT} (A/A: parent / parent): other - parent, wall time' in extra
        assert len(extra) == len([f for f in record['figures'] if f['bench'] == 1 and f['unit'] == 'ratio']) // 2
        assert all(f['goal'] is None for f in extra.values())
        # video encodes too, for the templates with video geometry, with the same goal
        video = [f for f in record['figures'] if f['bench'] == 1 and ' (video): _geo / parent, wall' in f['name']]
        assert {f['name'].split(' ')[0] for f in video} == set(VIDEO_PARENTS) and all(f['goal'] for f in video)

    def test_reward_ratios_side_by_side(self, quick_run):
        # single-box and mix throughput ratios come from the same run, next to each other
        stdout, _ = quick_run
        names = [line[3:51].strip() for line in stdout.splitlines() if line.startswith('3 ')]
        i = names.index('iou_score / baseline throughput, single box')
        assert names[i + 1] == 'iou_score / baseline throughput, mix'

    def test_figures_without_goal_have_no_verdict(self, quick_run):
        _, record = quick_run
        assert all(f['passed'] is None for f in record['figures'] if f['goal'] is None)


class TestRegexBaseline:
    # The comparison baseline of benchmark 3: first <answer>, first integer box, one IoU.
    @pytest.mark.parametrize('completion,solution,expected', [
        # an exact box in an answer tag
        ('<answer>[10, 10, 20, 20]</answer>', '[10, 10, 20, 20]', 1.0),
        # no answer tag: scored 0 even though a box is present
        ('[10, 10, 20, 20]', '[10, 10, 20, 20]', 0.0),
        # decimals are not matched by its integer-only pattern
        ('<answer>[10.5, 10, 20, 20]</answer>', '[10, 10, 20, 20]', 0.0),
        # a multi-box ground truth makes it raise inside, which it scores 0
        ('<answer>[10, 10, 20, 20]</answer>', '[[10, 10, 20, 20], [0, 0, 5, 5]]', 0.0),
        # disjoint boxes
        ('<answer>[0, 0, 5, 5]</answer>', '[10, 10, 20, 20]', 0.0),
    ])
    def test_cases(self, completion, solution, expected):
        frame = dict(input_width=100, input_height=100, image_width=100, image_height=100)
        assert regex_iou(completion, solution, **frame) == pytest.approx(expected)

    def test_scales_from_the_input_frame(self):
        # a box in a 50x50 model frame, ground truth in the 100x100 original
        assert regex_iou('<answer>[5, 5, 10, 10]</answer>', '[10, 10, 20, 20]', input_width=50,
                         input_height=50, image_width=100, image_height=100) == pytest.approx(1.0)


class TestHelpers:
    @pytest.mark.parametrize('width,height', [(1, 1), (640, 480), (4032, 3024), (1000, 40)])
    def test_png_header_is_read_as_its_size(self, tmp_path, width, height):
        path = tmp_path / 'h.png'
        path.write_bytes(png_header(width, height))
        assert read_image_size(str(path)) == (width, height)

    @pytest.mark.parametrize('goal,value,met', [
        (Goal('<=', 1.02), 1.02, True),
        (Goal('<=', 1.02), 1.03, False),
        (Goal('>=', 50), 49.9, False),
        (Goal('<', 30), 30, False),
    ])
    def test_goal(self, goal, value, met):
        assert goal.met(value) is met

    def test_figure_is_judged_on_its_statistic(self):
        # median 1.0 meets <= 1.02, but the max (judged for memory) does not
        values = [0.9, 1.0, 1.5]
        assert Figure(1, 'x', 'ratio', values, Goal('<=', 1.02)).passed() is True
        assert Figure(1, 'x', 'ratio', values, Goal('<=', 1.02, stat='max')).passed() is False
        assert Figure(1, 'x', 'ratio', values).passed() is None

    def test_table_row(self):
        table = format_table([Figure(3, 'iou_score', 'completions/s', [1e4, 3e4, 2e4],
                                     Goal('>=', 20_000))])
        row = table.splitlines()[2].split()
        assert row[0] == '3' and row[-1] == 'pass' and '20,000' in row and '10,000' in row
        # a long name is printed whole, the columns after it still aligned
        long = 'qwen2_5_vl (A/A: parent / parent): other - parent, wall time'
        table = format_table([Figure(1, long, 'us/sample', [-5.0, 1.0, 9.0]), Figure(1, 'x', 'ratio', [1.0])])
        first, second = table.splitlines()[2:4]
        assert long in first and first.index('us/sample') == second.index('ratio')

    def test_one_parent_per_family(self):
        chosen = family_parents()
        assert len({family_of(p)[0].name for p in chosen}) == len(chosen)
        assert 'qwen2_5_vl' in chosen and set(chosen) <= set(parents())

    def test_interleaving_alternates_order(self):
        order = []
        interleaved({'a': lambda: order.append('a'), 'b': lambda: order.append('b')}, rounds=4)
        assert order == ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']

    def test_step_seconds_skip_warmup(self, tmp_path):
        path = tmp_path / 'steps.txt'
        path.write_text('0 10.0 1.0\n1 12.0 2.0\n2 13.5 2.5\n3 14.5 3.0\n')
        wall, cpu = step_seconds(str(path), warmup=1)
        assert wall == [1.5, 1.0] and cpu == [0.5, 0.5]

    def test_generated_geometry_log_has_the_runlog_schema(self, tmp_path):
        write_geometry_log(str(tmp_path), 2000)
        lines = [json.loads(x) for x in (tmp_path / 'image_geometry.jsonl').read_text().splitlines()]
        assert len(lines) == 2000
        ok = [x for x in lines if x['error'] is None]
        assert {'step', 'rank', 'mode', 'sample_id', 'image_index', 'image', 'template',
                'original_width', 'resized_width', 'num_tokens', 'grid', 'clamped',
                'mismatch', 'time'} <= set(ok[0])
        assert len(ok) == 1998

    @pytest.mark.parametrize('argv,match', [
        (['--only', '7'], 'benchmarks are'),
        (['--only', 'x'], 'expected benchmark numbers'),
        (['--rounds', '0'], 'positive integer'),
    ])
    def test_bad_arguments(self, capsys, argv, match):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        assert match in capsys.readouterr().err

    def test_encode_pairs_carry_the_work_left_for_the_collate(self):
        # What a `_geo` encode leaves for later (swift_ext.recorder) is charged to its own pairs:
        # a template whose encodes each leave 4 ms of work reads at least 4 ms more a pair.
        import time

        from swift_ext.cli.bench.template import BATCH, _encode_round
        from swift_ext.recorder import recorder

        class Parent:
            def encode(self, sample):
                return {'input_ids': [sample, 1]}

            def data_collator(self, rows):
                return {'input_ids': [r['input_ids'] for r in rows]}

        class Leaves(Parent):
            geo_family = 'stands for a _geo template'

            def encode(self, sample):
                encoded = super().encode(sample)
                recorder().defer(time.sleep, (0.004,), ids=(encoded['input_ids'],))
                return encoded

            def data_collator(self, rows):  # as swift_ext.templates' collate: the parent's, then the trigger
                collated = super().data_collator(rows)
                recorder().collate(rows, collated, 'train')
                return collated

        # A job an earlier encode left waiting past the time trigger is done before the round, not
        # inside its first pair (where it would drain the batch's jobs out of the collate's share).
        recorder().defer(time.sleep, (0,))
        recorder().since -= 1000
        times = _encode_round(Parent(), Leaves(), list(range(BATCH * 2)))
        assert len(times) == BATCH * 4 and recorder().waiting() == 0
        assert all(b[0] >= 0.0039 for _, b in times)  # each pair's own share of the collate's work


def _minor_faults() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(sys.platform != 'linux', reason='glibc malloc settings: Linux only')
def test_steady_heap_reuses_large_blocks_and_restores_the_defaults():
    # 64 MiB is over glibc's largest mmap threshold: by default each such block is new pages from the
    # kernel (16k page faults); inside steady_heap the second one reuses the first one's memory.
    size = 64 << 20

    def faults_of_one_block() -> int:
        bytearray(size)  # a warm-up of the same size: its pages are the ones to be reused
        before = _minor_faults()
        block = bytearray(size)  # zero-filled: every page is touched
        faults = _minor_faults() - before
        del block
        return faults

    with steady_heap() as took:
        assert took is True  # glibc here
        inside = faults_of_one_block()
    outside = faults_of_one_block()
    assert inside < 1000 < (size >> 12) // 2 < outside


def test_rounds_in_new_processes_are_merged_by_figure(tmp_path, monkeypatch):
    # each round's process reports one value a figure; the figure is every round's value, its goal kept
    from swift_ext.cli.bench import Context, template
    goal = {'op': '<=', 'threshold': 1.01, 'stat': 'median', 'text': '<= 1.01'}
    rounds = [{'figures': [{'name': 'a: _geo / parent, wall time', 'unit': 'ratio', 'goal': goal, 'values': [1.0 + i]},
                           {'name': 'a: parent encode', 'unit': 'ms/sample', 'goal': None, 'values': [10.0 + i]}],
               'failures': ['[1] b: not measured: boom'], 'steady': True} for i in range(3)]
    monkeypatch.setattr(template, '_round_in_new_process', lambda ctx, index: rounds[index])
    ctx = Context(quick=True, rounds=3, work=str(tmp_path))
    figures = template.run(ctx)
    assert [(f.name, f.values) for f in figures] == [('a: _geo / parent, wall time', [1.0, 2.0, 3.0]),
                                                      ('a: parent encode', [10.0, 11.0, 12.0])]
    assert figures[0].goal == Goal('<=', 1.01) and figures[1].goal is None
    assert ctx.failures == ['[1] b: not measured: boom']  # once, not once a round
    assert 'Each round in a new Python process (3 rounds)' in ctx.notes[1][0]


@pytest.mark.tiny  # starts processes (that fail at once)
def test_a_round_whose_process_fails_is_reported_not_measured(tmp_path, monkeypatch):
    from swift_ext.cli.bench import Context, template
    monkeypatch.setattr(template, 'ROUND_MODULE', 'swift_ext.no_such_module')
    ctx = Context(quick=True, rounds=2, work=str(tmp_path))
    assert template.run(ctx) == []
    assert len(ctx.failures) == 2 and all('not measured: its process exited with 1' in x for x in ctx.failures)
    assert 'No module named swift_ext.no_such_module' in ctx.failures[0]
