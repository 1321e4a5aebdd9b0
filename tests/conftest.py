"""Fixtures shared by the command-line tests."""

import os, subprocess, sys

import pytest


@pytest.fixture(scope='session')
def world(tmp_path_factory):
    "The tiny synthetic FF++ and Celeb-DF worlds (8 frames per video), written once by `dfnb synth`"
    d = tmp_path_factory.mktemp('world')
    cmd = [
        sys.executable,
        '-c',
        'import sys; from dfnb.cli import main; sys.exit(main())',
        'synth',
        '--out',
        str(d),
        '--preset',
        'tiny',
        '--frames',
        '8',
        '--worlds',
        'ffpp,cdf',
        '--workers',
        '2',
        '--no-progress',
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return d


def _run(*args):
    "`python -m dfnb.cli ARGS` on one thread"
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(
        [sys.executable, '-m', 'dfnb.cli', *map(str, args)], capture_output=True, text=True, timeout=900, env=env
    )


@pytest.fixture(scope='session')
def tiny_prep(tmp_path_factory):
    """The tiny FF++- and Celeb-DF-like worlds (4 frames per video) in `w/`, prepared by `dfnb prep` into `p/`
    (2 frames, 64 px); shared by the train and sweep tests"""
    d = tmp_path_factory.mktemp('data')
    r = _run('synth', '--out', d / 'w', '--preset', 'tiny', '--frames', '4', '--worlds', 'ffpp,cdf', '--no-progress')
    assert r.returncode == 0, r.stderr
    for w in ('ffpp', 'cdf'):
        where = ('--root', d / 'w' / w, '--out', d / 'p' / w)
        r = _run('prep', '--dataset', w, *where, '--frames', '2', '--size', '64', '--no-progress')
        assert r.returncode == 0, r.stderr
    return d
