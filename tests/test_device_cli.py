"""`dfnb device` as a user runs it: refusals, and a tiny check on the CPU (its `--help`: tests/test_startup.py)."""

import os, subprocess, sys

PY = sys.executable
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def run(*args):
    return subprocess.run([PY, *map(str, args)], capture_output=True, text=True, timeout=600, env=ENV)


def test_refuses_bad_arguments():
    for bad, msg in ((['--ids', '9'], '--ids 9 must be an even number'), (['--steps', '-1'], '--steps -1 must be')):
        r = run('-m', 'dfnb.cli', 'device', *bad)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith('dfnb: error: ') and msg in r.stderr, r.stderr


def test_tiny_check_on_cpu(tmp_path):
    tiny = ['--methods', 'bce', '--backbone', 'resnet10t', '--size', '64', '--batch-size', '2', '--steps', '1']
    tiny += ['--step-steps', '1', '--loader-batches', '1', '--loader-batch', '2', '--sizes', '64', '--workers', '0']
    tiny += ['--run-workers', '0', '--ids', '8', '--frames', '2', '--device', 'cpu']
    r = run('-m', 'dfnb.cli', 'device', *tiny, '--out', tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith('| ')]
    assert rows[0].startswith('| part | item | setting | images/s')
    assert [l.split(' | ')[0] for l in rows[1:]] == ['| loader'] * 5 + ['| step'] * 2 + ['| run']
