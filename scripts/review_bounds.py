"""Measure `swift-ext review`'s resource bounds on hostile run folders; prints figures, asserts nothing.

Cases (each a fresh `swift-ext review --no-plots` subprocess; peak RSS from the kernel's accounting
of the child, wall time from the parent):
  distinct_1m   1,000,000 geometry lines, every one with a distinct mode, size and token count
  line_500mb    one 500 MB line in completions.jsonl (and a normal line after it)
  keys_400      logging.jsonl with 400 reward keys over 200 steps (plotted: the first 12)

Usage: python scripts/review_bounds.py [--work DIR] [--lines N] [--line-mb M]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def geometry_lines(path, n):
    with open(path, 'w') as f:
        for i in range(n):
            w, h = 100 + i % 5000, 100 + (i * 7) % 7000
            f.write(json.dumps({'step': i, 'rank': 0, 'mode': f'mode{i}', 'image': f'/img/{i}.png',
                                'original_width': w + i, 'original_height': h, 'resized_width': w,
                                'resized_height': h, 'num_tokens': i + 1, 'tile_cols': 2, 'num_tiles': i % 97,
                                'clamped': None, 'mismatch': {f'k{i}': [i, i + 1]}, 'error': None}) + '\n')


def long_line(path, mb):
    with open(path, 'w') as f:
        f.write('{"step": ["1"], "completion": ["')
        chunk = 'x' * (1 << 20)
        for _ in range(mb):
            f.write(chunk)
        f.write('"], "GeoIoU": [0.5]}\n')
        f.write(json.dumps({'step': ['2'], 'completion': ['ok'], 'GeoIoU': [1.0]}) + '\n')


def many_keys(path, keys, steps):
    with open(path, 'w') as f:
        for s in range(1, steps + 1):
            rec = {f'rewards/R{k}/mean': (k * s) % 7 / 7 for k in range(keys)}
            rec['global_step/max_steps'] = f'{s}/{steps}'
            f.write(json.dumps(rec) + '\n')


def measure(run_dir, *extra):
    cmd = [sys.executable, '-m', 'swift_ext.cli', 'review', run_dir, '--out', os.path.join(run_dir, 'out'), *extra]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (KiB), not a running max
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode(errors='replace')
    if proc.returncode != 0 or 'Traceback' in text:
        print(text[-2000:])
    return proc.returncode, wall, usage.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work', default=None)
    p.add_argument('--lines', type=int, default=1_000_000)
    p.add_argument('--line-mb', type=int, default=500)
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='review_bounds_')
    cases = []
    for name, make, extra in (
            ('baseline (empty logging.jsonl)', lambda d: open(os.path.join(d, 'logging.jsonl'), 'w').close(), ()),
            ('keys_400 (400 keys x 200 steps, plots on)', lambda d: many_keys(os.path.join(d, 'logging.jsonl'),
                                                                               400, 200), ()),
            (f'distinct ({args.lines:,} lines, all values distinct)',
             lambda d: geometry_lines(os.path.join(d, 'image_geometry.jsonl'), args.lines), ('--no-plots',)),
            (f'one {args.line_mb} MB line', lambda d: long_line(os.path.join(d, 'completions.jsonl'), args.line_mb),
             ('--no-plots',))):
        d = os.path.join(work, name.split(' ')[0])
        os.makedirs(d, exist_ok=True)
        make(d)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith('.jsonl'))
        rc, wall, peak = measure(d, *extra)
        cases.append((name, size, rc, wall, peak))
        print(f'{name:48s} input {size / 1e6:9.1f} MB   rc {rc}   wall {wall:6.1f} s   peak RSS {peak:7.1f} MB',
              flush=True)
        for f in os.listdir(d):
            if f.endswith('.jsonl'):
                os.remove(os.path.join(d, f))


if __name__ == '__main__':
    main()
