#!/usr/bin/env python
"""Bounds of `plan`, `check` and the geometry log writer on hostile input, measured and printed.

A benchmark-style script, not a test: it prints figures (seconds, peak RSS) for the README's
"When things go wrong" contract. Run it from the repository root:

    .venv/bin/python scripts/hostile_bounds.py [--rows 20000] [--data_url_mb 200]

- plan, a worker SIGKILLed mid-run (what the OOM killer does): seconds from the kill to plan's exit, exit status;
- plan on a dataset of data URLs: peak RSS (the header cache keeps no payload);
- check on a 1.7 MB log line of marker fragments (quadratic before): seconds;
- the writer: a child forked while another thread holds the lock writes and exits (seconds), and
  failed writes to a missing folder: warnings logged vs records counted.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _png(width: int, height: int, noise: bool = False) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    image = (Image.frombytes('RGB', (width, height), os.urandom(width * height * 3)) if noise
             else Image.new('RGB', (width, height), (120, 30, 30)))
    image.save(buf, format='PNG')
    return buf.getvalue()


def _plan_cmd(dataset: str, *extra: str) -> list:
    return [sys.executable, '-m', 'swift_ext.cli', 'plan', dataset, '--template', 'qwen2_5_vl_geo', *extra]


def killed_worker(work: str, rows: int) -> None:
    import psutil
    image = os.path.join(work, 'a.png')
    with open(image, 'wb') as f:
        f.write(_png(640, 480))
    dataset = os.path.join(work, 'many.jsonl')
    with open(dataset, 'w') as f:
        for i in range(rows):
            f.write(json.dumps({'messages': [], 'images': [image], 'chat_template_kwargs': {'max_pixels': 200704 + i}})
                    + '\n')
    proc = subprocess.Popen(_plan_cmd(dataset, '--workers', '2', '--verify'), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    workers = []
    while time.monotonic() < deadline and not workers:
        workers = [c for c in parent.children(recursive=True) if c.is_running()]
        time.sleep(0.2)
    time.sleep(1.0)  # let the workers take chunks
    if proc.poll() is not None or not workers:
        print(f'plan, killed worker: plan ended before a worker could be killed (rc {proc.returncode}); '
              'use more --rows')
        return
    killed_at = time.monotonic()
    os.kill(workers[0].pid, signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=300)
        print(f'plan, a worker SIGKILLed: exited {time.monotonic() - killed_at:.2f} s after the kill, '
              f'status {proc.returncode}; stderr: {err.strip().splitlines()[-1][:160]!r}')
    except subprocess.TimeoutExpired:
        proc.kill()
        print('plan, a worker SIGKILLed: STILL RUNNING 300 s after the kill (hang)')


def data_url_rss(work: str, megabytes: int) -> None:
    payload = 'data:image/png;base64,' + base64.b64encode(_png(600, 600, noise=True)).decode()
    rows = max(1, megabytes * (1 << 20) // len(payload))
    dataset = os.path.join(work, 'data_urls.jsonl')
    with open(dataset, 'w') as f:
        for _ in range(rows):
            f.write(json.dumps({'messages': [], 'images': [payload]}) + '\n')
    size = os.path.getsize(dataset) / (1 << 20)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    proc = subprocess.run(_plan_cmd(dataset, '--workers', '2', '--sweep', '200704'), cwd=ROOT, capture_output=True,
                          text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f'plan, {rows} data-URL rows ({size:.0f} MB): {time.monotonic() - start:.1f} s, status {proc.returncode}, '
          f'peak RSS of one process {max(peak, before) / 1024:.0f} MB')


def long_check_line(work: str) -> None:
    from swift_ext.cli import check
    from swift_ext.settings import default_settings
    junk = ('swift-ext ' + 'x' * 50 + ' preprocessing fingerprint ') * 20000
    real = ('swift-ext qwen2_5_vl_geo preprocessing fingerprint 0123 (role rollout, rank 0, pid 7): '
            + json.dumps(default_settings('qwen2_5_vl').to_dict()))
    path = os.path.join(work, 'long.log')
    with open(path, 'w') as f:
        f.write(junk + '\n' + real + '\n')
    start = time.monotonic()
    records = check.load_fingerprints(path)
    print(f'check, a {len(junk) / 1e6:.1f} MB line of marker fragments: {time.monotonic() - start:.3f} s, '
          f'{len(records)} record(s) found')


def writer(work: str) -> None:
    import logging

    from swift_ext import runlog
    logging.basicConfig(level=logging.WARNING)
    os.environ[runlog.ENV_DIR] = os.path.join(work, 'run')
    runlog.emit([{'step': 0}])
    held, release = threading.Event(), threading.Event()

    def hold():
        with runlog.STATE.lock:
            held.set()
            release.wait(60)
    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        runlog.emit([{'step': 1}])
        os._exit(0)
    status = None
    while time.monotonic() - start < 30 and status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        status = os.waitstatus_to_exitcode(raw) if done else None
        time.sleep(0.01)
    release.set()
    thread.join()
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f'writer, fork while another thread holds the lock: child '
          f'{f"exited {status} after {time.monotonic() - start:.3f} s" if status is not None else "DEADLOCKED"}')
    blocker = os.path.join(work, 'blocker')
    open(blocker, 'w').close()
    os.environ[runlog.ENV_DIR] = os.path.join(blocker, 'run')
    handler = _Count()
    logging.getLogger('swift_ext').addHandler(handler)
    before = runlog.lost_records()
    for i in range(10000):
        runlog.emit([{'step': i}])
    print(f'writer, 10000 failed writes: {handler.count} warning(s), {runlog.lost_records() - before} records counted')


class _Count:
    level = 0

    def __init__(self):
        self.count = 0

    def handle(self, record):
        self.count += 'could not write' in record.getMessage()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=20000, help='rows of the killed-worker dataset')
    parser.add_argument('--data_url_mb', type=int, default=200, help='size of the data-URL dataset')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        killed_worker(work, args.rows)
        data_url_rss(work, args.data_url_mb)
        long_check_line(work)
        writer(work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
