"""`dfnb prep` as a user runs it: bad input in a folder layout, and a run killed with SIGKILL then rerun."""

import hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DFNB = [sys.executable, '-c', 'import sys; from dfnb.cli import main; sys.exit(main())']


def dfnb(*args, **kw):
    return subprocess.run(DFNB + [str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def files(root):
    "md5 of every output file, the run report excepted"
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob('*'))
        if p.is_file() and not p.name.startswith('prep_report')
    }


@pytest.mark.parametrize('backend,workers', [('mtcnn', 1), ('mediapipe', 2)])
def test_bad_videos_are_reported_and_the_run_completes(world, tmp_path, backend, workers):
    from dfnb.synth import write_video

    root = tmp_path / 'folder'
    (root / 'real').mkdir(parents=True)
    (root / 'fake').mkdir()
    good = sorted((world / 'cdf/Celeb-real').glob('*.mp4'))[0]
    shutil.copy(good, root / 'real/face.mp4')
    (root / 'fake/zero.mp4').write_bytes(b'')
    (root / 'fake/corrupt.mp4').write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    ramp = np.tile(np.linspace(40, 200, 176, dtype=np.uint8)[None, :, None], (128, 1, 3))
    write_video(root / 'real/faceless.mp4', [ramp] * 8, 23)
    cmd = [
        'prep',
        '--dataset',
        'folder',
        '--root',
        root,
        '--out',
        tmp_path / 'out',
        '--frames',
        '4',
        '--size',
        '96',
        '--backend',
        backend,
        '--workers',
        workers,
        '--no-progress',
    ]
    r = dfnb(*cmd)
    assert r.returncode == 0, r.stderr
    assert '3 failed' in r.stdout, r.stdout
    rep = json.loads((tmp_path / 'out/prep_report.json').read_text())
    reasons = {f['video_id']: f['reason'] for f in rep['failed']}
    assert reasons == {'fake/zero': 'empty', 'fake/corrupt': 'corrupt', 'real/faceless': 'no_face'}
    assert all(f['path'] and f['detail'] for f in rep['failed'])
    man = pd.read_parquet(tmp_path / 'out/manifest.parquet')
    assert set(man.video_id) == {'real/face'}
    assert len(man) == rep['frames']['requested'] - rep['frames']['skipped'] == 4 * 4 - rep['frames']['skipped']
    assert rep['frames']['skipped_by_reason']['empty'] == rep['frames']['skipped_by_reason']['corrupt'] == 4
    # a rerun redoes nothing, failures included, and reports the same
    r2 = dfnb(*cmd)
    assert r2.returncode == 0, r2.stderr
    rep2 = json.loads((tmp_path / 'out/prep_report.json').read_text())
    assert rep2['videos']['already_complete'] == 4 and rep2['videos']['failed'] == 3 and rep2['frames'] == rep['frames']


def test_killed_prep_resumes_to_the_same_manifest(world, tmp_path):
    args = [
        'prep',
        '--dataset',
        'ffpp',
        '--root',
        world / 'ffpp',
        '--frames',
        '8',
        '--size',
        '256',
        '--workers',
        '1',
        '--no-progress',
    ]
    clean, killed = tmp_path / 'clean', tmp_path / 'killed'
    r = dfnb(*args, '--out', clean)
    assert r.returncode == 0, r.stderr
    want = files(clean)
    n_videos = json.loads((clean / 'prep_report.json').read_text())['videos']['listed']

    p = subprocess.Popen(
        DFNB + [str(a) for a in args] + ['--out', str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.time()
    while len(list(killed.rglob('_video.json'))) < 5 and time.time() - t0 < 300 and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, 'the run finished before it could be killed: make it longer'
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done_before = len(list(killed.rglob('_video.json')))
    assert 0 < done_before < n_videos and not (killed / 'manifest.parquet').exists()

    r = dfnb(*args, '--out', killed)
    assert r.returncode == 0, r.stderr
    rep = json.loads((killed / 'prep_report.json').read_text())
    assert rep['videos']['already_complete'] == done_before and rep['videos']['written_now'] == n_videos - done_before
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / 'manifest.parquet'), pd.read_parquet(clean / 'manifest.parquet')
    )
    got = files(killed)
    assert {k for k in got if '.tmp' in k} == set()
    assert {k: v for k, v in got.items() if not k.endswith('_video.json')} == {
        k: v for k, v in want.items() if not k.endswith('_video.json')
    }


def test_shards_merge_into_the_full_manifest(world, tmp_path):
    base = ['prep', '--dataset', 'cdf', '--root', world / 'cdf', '--frames', '3', '--size', '64', '--no-progress']
    assert dfnb(*base, '--out', tmp_path / 'full').returncode == 0
    for i in range(3):
        assert dfnb(*base, '--out', tmp_path / 'sharded', '--shard', f'{i}/3').returncode == 0
    parts = [pd.read_parquet(tmp_path / f'sharded/manifest.shard-{i}-of-3.parquet') for i in range(3)]
    assert sum(map(len, parts)) == len(pd.read_parquet(tmp_path / 'full/manifest.parquet'))
    r = dfnb(*base, '--out', tmp_path / 'sharded')
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / 'sharded/prep_report.json').read_text())
    assert rep['videos']['written_now'] == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / 'sharded/manifest.parquet'), pd.read_parquet(tmp_path / 'full/manifest.parquet')
    )
