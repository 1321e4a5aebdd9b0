"""`dfnb bench --preset smoke` as a user runs it: every method end to end on the tiny world, killed midway, rerun to
completion without redoing the runs that had finished."""

import os, signal, subprocess, sys, time

PY = sys.executable
DFNB = [PY, '-m', 'dfnb.cli']


def test_bench_smoke_killed_then_resumed(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', DFNB_DATA=str(tmp_path / 'data'))
    res = tmp_path / 'res'
    cmd = [str(c) for c in (*DFNB, 'bench', '--preset', 'smoke', '--out', res)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 900 and not list(res.glob('runs/*/eval/results.json')):
        time.sleep(0.2)
    assert p.poll() is None, 'the benchmark finished before it could be killed'
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done = {
        r.parent.parent.name: (r.parent.parent / 'best.pt').stat().st_mtime_ns
        for r in res.glob('runs/*/eval/results.json')
    }
    assert done and len(done) < 6
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for name, stamp in done.items():
        assert (res / 'runs' / name / 'best.pt').stat().st_mtime_ns == stamp, f'{name} was retrained'
        assert f'{name}: trained run reused' in r.stdout
    rep = (res / 'report.md').read_text()
    for m in ('bce', 'caddm', 'exposing', 'did', 'prodet', 'pdp', 'gend'):
        assert f'| {m} |' in rep, m
    assert 'Every backbone starts from the same **dfnb pretrain** backbone' in rep  # one warm start for all
    assert '### Loader' in rep and '| quad | 64 | 0 |' in rep  # every sample kind's loader, measured
    assert (res / 'robustness.png').exists() and (res / 'auc.png').exists()
    # the claims, checked on runs trained elsewhere (here: the same folder), through the CLI flag; nothing is retrained
    r = subprocess.run(cmd + ['--claims-from', str(res / 'runs')], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'training' not in r.stdout and f"## Claims, checked on `{res / 'runs'}`" in (res / 'report.md').read_text()
    assert (res / 'claims_from.csv').exists()
