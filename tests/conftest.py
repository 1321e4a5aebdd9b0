"""Fixtures shared by the command-line tests."""

import subprocess, sys

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
