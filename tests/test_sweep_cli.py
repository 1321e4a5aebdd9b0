"""`dfnb sweep` as a user runs it: two variants trained in two worker processes, the table written, a rerun reusing
every run."""

import json, os, subprocess, sys

import pandas as pd

PY = sys.executable
DFNB = [PY, '-m', 'dfnb.cli']
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, env=ENV)


def test_sweep_two_jobs_then_reuse(tiny_prep, tmp_path):
    d = tmp_path
    p = tiny_prep / 'p'
    cmd = [
        *DFNB,
        'sweep',
        'steps=3',
        'val_every=3',
        'batch_size=8',
        'model.backbone=resnet10t',
        'model.size=64',
        '--data',
        p / 'ffpp',
        '--test',
        p / 'ffpp',
        p / 'cdf',
        '--out',
        d / 'runs',
        '--jobs',
        '2',
        '--n-boot',
        '10',
        '--variant',
        'bce:method=bce',
        '--variant',
        'bce-wd:method=bce,weight_decay=0.01',
        '--table',
        d / 'tab',
    ]
    r = run(*cmd)
    assert r.returncode == 0, r.stderr
    T = pd.read_csv(d / 'tab.csv')
    assert set(T.label) == {'bce', 'bce-wd'} and set(T.set) == {'ffpp', 'cdf'} and len(T) == 8
    md = (d / 'tab.md').read_text()
    assert md.startswith('| label |') and '| bce-wd |' in md and md in r.stdout + '\n'
    assert json.loads((d / 'runs/bce-wd-s0/summary.json').read_text())['steps'] == 3
    assert (d / 'runs/bce-s0/config.yaml').read_text().count('threads: 1') + (
        d / 'runs/bce-s0/config.yaml'
    ).read_text().count("threads: '1'") == 1
    r = run(*cmd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('trained run reused') == 2 and r.stdout.count('evaluation reused') == 2
    pd.testing.assert_frame_equal(pd.read_csv(d / 'tab.csv'), T)
    bad = [c if c != 'bce-wd:method=bce,weight_decay=0.01' else 'bce-wd:method=bce,weight_decay=0.5' for c in cmd]
    r = run(*bad)
    assert r.returncode == 2 and 'other settings' in r.stderr
