"""`dfnb synth` as a user runs it: in a subprocess, killed midway with SIGKILL, then rerun."""

import hashlib, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import cv2

DFNB = [sys.executable, '-c', 'import sys; from dfnb.cli import main; sys.exit(main())']
ARGS = ['synth', '--preset', 'tiny', '--frames', '10', '--workers', '1', '--no-progress']


def files(root):
    "md5 of every file under root, the run report excepted"
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob('*'))
        if p.is_file() and p.name != 'synth_report.json'
    }


def n_frames(p):
    cap = cv2.VideoCapture(str(p))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_console_script_installed():
    exe = shutil.which('dfnb')
    assert exe, 'the dfnb console script is not on PATH: install the project as README.md says'
    r = subprocess.run([exe, 'synth', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '--preset' in r.stdout


def test_killed_run_resumes_to_the_same_files(tmp_path):
    clean, killed = tmp_path / 'clean', tmp_path / 'killed'
    subprocess.run(DFNB + ARGS + ['--out', str(clean)], check=True, timeout=600, capture_output=True)
    want = files(clean)
    assert sum(k.endswith('.mp4') for k in want) > 100

    p = subprocess.Popen(
        DFNB + ARGS + ['--out', str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.time()
    while len(list(killed.rglob('*.mp4'))) < 25 and time.time() - t0 < 300 and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, 'the run finished before it could be killed: make it longer'
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = {f: h for f, h in files(killed).items() if '.tmp' not in f}
    assert 0 < sum(f.endswith('.mp4') for f in before) < sum(k.endswith('.mp4') for k in want)
    for f in before:  # nothing that looks finished is half-written
        assert before[f] == want[f], f
        if f.endswith('.mp4'):
            assert n_frames(killed / f) == 10

    r = subprocess.run(DFNB + ARGS + ['--out', str(killed)], check=True, timeout=600, capture_output=True, text=True)
    assert 'videos written' in r.stdout
    assert files(killed) == want  # the rerun completes to exactly the uninterrupted result
    written = int(r.stdout.split('dfnb synth: ')[1].split(' videos')[0])
    assert written == sum(k.endswith('.mp4') for k in want) - sum(f.endswith('.mp4') for f in before)
