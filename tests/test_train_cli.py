"""`dfnb train / eval / detect` as a user runs them: SIGKILL and resume, torchrun with 2 CPU processes, NaN handling."""

import json, os, signal, subprocess, sys, time

import pandas as pd
import torch

PY = sys.executable
DFNB = [PY, '-m', 'dfnb.cli']
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, env=ENV, **kw)


def args(data, out, steps=24, *extra):
    return [
        'train',
        '--method',
        'bce',
        '--data',
        data / 'p/ffpp',
        '--out',
        out,
        f'steps={steps}',
        'val_every=4',
        'log_every=4',
        'batch_size=8',
        'model.backbone=resnet10t',
        'model.size=64',
        'threads=1',
        *extra,
    ]


def weights(f):
    return torch.load(f, map_location='cpu', weights_only=True)['model']


def test_killed_training_resumes_to_the_same_result(tiny_prep, tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    r = run(*DFNB, *args(tiny_prep, a))
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen(
        DFNB + [str(x) for x in args(tiny_prep, b)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
        start_new_session=True,
    )
    t0 = time.time()
    while not (b / 'last.pt').exists() and time.time() - t0 < 600 and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, 'the run finished before it could be killed: make it longer'
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    step = torch.load(b / 'last.pt', weights_only=True)['step']
    assert 0 < step < 24
    r = run(*DFNB, *args(tiny_prep, b))
    assert r.returncode == 0, r.stderr
    assert f'resuming {b} at step' in r.stdout
    pd.testing.assert_frame_equal(pd.read_csv(a / 'val.csv'), pd.read_csv(b / 'val.csv'))
    wa, wb = weights(a / 'last.pt'), weights(b / 'last.pt')
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)
    # the selected run evaluates and detects
    r = run(
        *DFNB,
        'eval',
        '--run',
        b,
        '--data',
        tiny_prep / 'p/ffpp',
        tiny_prep / 'p/cdf',
        '--n-boot',
        '20',
        '--robustness',
        '--figures',
        '--max-videos',
        '6',
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((b / 'eval/results.json').read_text())
    assert set(res) == {'ffpp', 'cdf'} and (b / 'eval/eval.png').exists()
    for s in ('## Calibration', '## Thresholds fixed on validation', '## Video aggregation', '## Fair slices'):
        assert s in r.stdout and s in (b / 'eval/decisions.md').read_text(), s
    assert '## Metrics' in (b / 'card.md').read_text()
    rb = pd.read_csv(b / 'eval/robustness_cdf.csv')
    assert len(rb) == 8 * 6 and rb.level.max() == 5
    assert all((b / f'eval/{f}_cdf.png').exists() for f in ('robustness', 'tsne', 'gradcam'))
    vid = sorted((tiny_prep / 'w/cdf/Celeb-synthesis').glob('*.mp4'))[0]
    r = run(*DFNB, 'detect', vid, '--run', b, '--frames', '3', '--json', tmp_path / 'd.json')
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / 'd.json').read_text())
    assert d['frames_sampled'] == 3 and 0 <= d['prob'] <= 1
    assert f"model card: {b / 'card.md'}" in r.stderr
    # the run outside PyTorch: exported, checked, its settings inside the file
    r = run(*DFNB, 'export', '--run', b, '--onnx', tmp_path / 'b.onnx')
    assert r.returncode == 0, r.stderr
    x = json.loads(r.stdout.strip().splitlines()[-1])
    assert x['max_abs_diff_vs_torch'] <= 1e-4 and x['method'] == 'bce' and x['crop']['size'] == 64
    (tmp_path / 'mine.onnx').write_text('not a model')
    r = run(*DFNB, 'export', '--run', b, '--onnx', tmp_path / 'mine.onnx')
    assert r.returncode == 2 and r.stderr.startswith('dfnb: error: ') and 'never overwrites' in r.stderr
    assert (tmp_path / 'mine.onnx').read_text() == 'not a model'


def test_torchrun_two_cpu_processes_match_one(tiny_prep, tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    r = run(*DFNB, *args(tiny_prep, one, 16))
    assert r.returncode == 0, r.stderr
    r = run(
        PY,
        '-m',
        'torch.distributed.run',
        '--standalone',
        '--nproc_per_node',
        '2',
        '-m',
        'dfnb.cli',
        *args(tiny_prep, two, 16),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    s1, s2 = (json.loads((x / 'summary.json').read_text()) for x in (one, two))
    assert s2['world_size'] == 2 and s1['world_size'] == 1
    v1, v2 = pd.read_csv(one / 'val.csv'), pd.read_csv(two / 'val.csv')
    assert v1.step.tolist() == v2.step.tolist()
    assert abs(v1.frame_auc.iloc[-1] - v2.frame_auc.iloc[-1]) < 0.15, (v1, v2)


def test_nan_loss_stops_with_a_clear_message(tiny_prep, tmp_path):
    r = run(*DFNB, *args(tiny_prep, tmp_path / 'n', 8, 'lr=1e30'))
    assert r.returncode == 3 and 'non-finite' in r.stderr, r.stderr
