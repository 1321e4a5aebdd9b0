"""dfnb on real pixels: the small real fixture in ../shared/realdata (FF++ c23 in the official layout, DFDC parts,
a real DFDC video, MesoNet's published weights with reference outputs). Every test skips, saying why, where the
fixture is absent; none of its files is ever copied into the repository."""

import http.client, json, os, re, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from dfnb.core import REALDATA_ENV, realdata_root

REAL = realdata_root()
pytestmark = pytest.mark.skipif(
    REAL is None, reason=f'the real-data fixture is absent (set ${REALDATA_ENV} or put it at ../shared/realdata)'
)
ENV = dict(os.environ, OMP_NUM_THREADS='1')
WEIGHTS = ('Meso4_DF', 'Meso4_F2F', 'MesoInception_DF', 'MesoInception_F2F')


def run(*args, timeout=900):
    "`python -m dfnb.cli ARGS` on one thread"
    cmd = [sys.executable, '-m', 'dfnb.cli', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def prep_ffpp(out, *options):  # the output folder; more `dfnb prep` options
    "`dfnb prep` of the fixture's FF++ folder with its official split files"
    return run(
        'prep', '--dataset', 'ffpp', '--root', REAL / 'ffpp', '--splits', REAL / 'ffpp_splits', '--out', out, *options
    )


def real_backends():
    from dfnb.prep import installed

    if not (installed('mediapipe') and installed('mtcnn')):
        pytest.fail('the face backends are missing: pip install --no-deps -r face-backends.txt (see README)')


@pytest.fixture(scope='module')
def meso_run(tmp_path_factory):
    "MesoNet's published Meso4_DF weights imported by `dfnb import` into a run folder"
    d = tmp_path_factory.mktemp('meso')
    r = run('import', 'mesonet', REAL / 'mesonet/weights/Meso4_DF.h5', '--out', d / 'run')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['trained_on'] == 'their Deepfake dataset'
    return d / 'run'


@pytest.mark.parametrize('name', WEIGHTS)
def test_mesonet_port_reproduces_the_reference(name, tmp_path):
    "Each published file, imported, gives the Keras model's logits on the 4 test faces and the random input"
    import torch
    from PIL import Image
    from dfnb.runs import load_run
    from dfnb.importer import import_mesonet
    from dfnb.data import MEAN, STD

    ref = json.loads((REAL / 'mesonet/reference.json').read_text())
    run_dir = import_mesonet(REAL / f'mesonet/weights/{name}.h5', tmp_path / 'run')
    model, meta = load_run(run_dir)
    assert meta['imported']['sha256'] == ref['outputs'][name]['sha256']
    faces = [Image.open(REAL / 'mesonet' / p).convert('RGB').resize((256, 256), Image.BILINEAR) for p in ref['images']]
    faces = np.stack([np.asarray(f) for f in faces]).astype(np.float32) / 255
    rnd = np.random.default_rng(0).random((2, 256, 256, 3)).astype(np.float32)
    for x, want in ((faces, ref['outputs'][name]['images_logit']), (rnd, ref['outputs'][name]['random_logit'])):
        t = (torch.from_numpy(x).permute(0, 3, 1, 2) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(
            1, 3, 1, 1
        )
        with torch.no_grad():
            real_logit = -model({'image': t})['logits'].numpy()  # MesoNet's class 1 is real
        err = np.abs(real_logit - want) / np.maximum(1, np.abs(want))
        assert err.max() < 1e-4, (name, real_logit, want)


def test_a_file_of_another_architecture_is_refused_in_one_line(tmp_path):
    "MesoInception's weights are not Meso4's: the first layer that does not fit is named"
    from dfnb.detectors.mesonet import MesoNet, load_keras_mesonet

    with pytest.raises(ValueError, match=r'MesoInception_DF\.h5: layer conv2d_\d+ holds') as e:
        load_keras_mesonet(MesoNet('meso4'), REAL / 'mesonet/weights/MesoInception_DF.h5')
    assert '\n' not in str(e.value)


def test_ffpp_prep_finds_a_face_in_every_frame_and_counts_what_is_missing(tmp_path):
    real_backends()
    out = tmp_path / 'ffpp'
    r = prep_ffpp(out, '--frames', '8', '--no-progress')
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / 'prep_report.json').read_text())
    assert rep['videos']['written_now'] == 7 and rep['videos']['failed'] == 0
    assert rep['frames']['requested'] == 56 and rep['frames']['manifest_rows'] == 56 and rep['frames']['skipped'] == 0
    by = {}
    for m in rep['missing']:
        by[m['what']] = by.get(m['what'], 0) + 1
    # the split files name 1,000 reals and, per method, 1,000 fakes (both directions of 500 pairs); 3 reals and one
    # fake of each of the four methods are here; FaceShifter's folder is absent
    assert by == {
        'real': 997,
        'Deepfakes': 999,
        'Face2Face': 999,
        'FaceSwap': 999,
        'NeuralTextures': 999,
        'FaceShifter': 1,
    }
    assert '4994 expected inputs are not on disk' in r.stdout


def test_dfdc_prep_reads_the_real_metadata(tmp_path):
    real_backends()
    out = tmp_path / 'dfdc'
    r = run('prep', '--dataset', 'dfdc', '--root', REAL / 'dfdc', '--out', out, '--frames', '4', '--no-progress')
    assert r.returncode == 2 and 'no real videos' in r.stderr  # the three parts' present videos are all fake
    r = run(
        'prep',
        '--dataset',
        'dfdc',
        '--root',
        REAL / 'dfdc',
        '--out',
        out,
        '--frames',
        '4',
        '--no-progress',
        '--allow-incomplete',
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / 'prep_report.json').read_text())
    assert rep['videos']['written_now'] == 3 and len(rep['missing']) == 3
    assert all(m['reason'] == 'listed in metadata.json, not on disk' for m in rep['missing'])
    assert rep['frames']['requested'] == 12 and rep['frames']['skipped'] <= 1  # at most one frame in 12 faceless
    import pandas as pd

    man = pd.read_parquet(out / 'manifest.parquet')
    assert (man.label == 1).all() and man.video_id.nunique() == 3
    assert 'dfdc_train_part_0/brtujopkby' in set(man.video_id)  # the portrait 1080×1920 video


def test_detect_on_the_real_video_and_frames(meso_run):
    real_backends()
    t0 = time.time()
    r = run('detect', REAL / 'dfdc_samples/lynaeydofd.mp4', '--run', meso_run, '--frames', '16')
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d['frames_sampled'] == 16 and d['frames_with_face'] >= 15 and d['verdict'] in ('real', 'fake')
    assert d['crop']['template'] == 'mesonet' and 0 <= d['prob'] <= 1
    print(f'dfnb detect on the 1080p 10 s video (16 frames): {time.time() - t0:.1f} s with start-up')
    for jpg in ('lynaeydofd_fr0.jpg', 'mqzvfufzoq_fr0.jpg'):
        r = run('detect', REAL / 'dfdc_samples' / jpg, '--run', meso_run)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)['frames_with_face'] == 1, (jpg, r.stdout)


def test_an_imported_run_goes_through_eval_export_and_serve(meso_run, tmp_path):
    real_backends()
    p = tmp_path / 'p'
    r = prep_ffpp(p, '--frames', '4', '--align', 'mesonet', '--no-progress')
    assert r.returncode == 0, r.stderr
    r = run('eval', '--run', meso_run, '--data', p, '--split', 'train', '--n-boot', '10', '--out', tmp_path / 'ev')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / 'ev/ffpp.json').read_text())
    assert res['setup']['selected_on'] == 'imported' and res['frame']['n'] == 12  # 519, 519_515, 750_743, 4 frames
    r = run('export', '--run', meso_run, '--onnx', tmp_path / 'meso.onnx')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['max_abs_diff_vs_torch'] < 1e-4
    cmd = [sys.executable, '-m', 'dfnb.cli', 'serve', '--run', str(meso_run), '--port', '0', '--frames', '4']
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        line = srv.stdout.readline()
        while line and not line.startswith('serving'):  # after its loading line
            line = srv.stdout.readline()
        m = re.search(r'on http://127\.0\.0\.1:(\d+)/', line)
        assert m
        c = http.client.HTTPConnection('127.0.0.1', int(m[1]), timeout=300)
        c.request('POST', '/analyse?name=frame.jpg', body=(REAL / 'dfdc_samples/mqzvfufzoq_fr0.jpg').read_bytes())
        resp = c.getresponse()
        a = json.loads(resp.read())
        assert resp.status == 200 and a['verdict'] in ('real', 'fake') and len(a['crops']) == 1, a
    finally:
        srv.terminate()
        srv.wait(10)
