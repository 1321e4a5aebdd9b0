"""`dfnb serve` in a real browser: headless Chromium (Debian's chromium and chromium-driver, see README) opens the page,
uploads a video, and reads the verdict; the screenshot is kept in data/test-artifacts/serve.png."""

import os, re, shutil, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = dict(os.environ, OMP_NUM_THREADS='1')
CHROMIUM, DRIVER = (
    shutil.which('chromium') or '/usr/bin/chromium',
    shutil.which('chromedriver') or '/usr/bin/chromedriver',
)


def run(*args):
    return subprocess.run([PY, '-m', 'dfnb.cli', *map(str, args)], capture_output=True, text=True, timeout=600, env=ENV)


@pytest.fixture(scope='module')
def served(world, tmp_path_factory):
    "A tiny trained and evaluated run, served on a free port with a 1 MB limit"
    d = tmp_path_factory.mktemp('serve')
    r = run('prep', '--dataset', 'ffpp', '--root', world / 'ffpp', '--out', d / 'p', '--frames', '2', '--size', '64')
    assert r.returncode == 0, r.stderr
    over = ['steps=3', 'val_every=3', 'batch_size=8', 'model.backbone=resnet10t', 'model.size=64']
    r = run('train', '--method', 'bce', '--data', d / 'p', '--out', d / 'run', *over)
    assert r.returncode == 0, r.stderr
    r = run('eval', '--run', d / 'run', '--data', d / 'p', '--n-boot', '10')
    assert r.returncode == 0, r.stderr
    cmd = [PY, '-m', 'dfnb.cli', 'serve', '--run', d / 'run', '--port', '0', '--max-mb', '1', '--frames', '4']
    p = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    first = p.stdout.readline()
    assert first.startswith('dfnb serve: loading run'), first  # it says it is loading before it loads
    line = first
    while not line.startswith('serving') and p.poll() is None:
        line = p.stdout.readline()
    m = re.search(r'on (http://127\.0\.0\.1:\d+/) \(uploads in (.+?),', line)
    assert m, line
    yield m[1], Path(m[2]), p, d / 'run'
    p.terminate()
    p.wait(10)
    assert not Path(m[2]).exists()  # the upload folder goes with the server


def browser(tmp):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail('headless Chromium is missing: apt-get install chromium chromium-driver (see README)')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in (
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        f'--user-data-dir={tmp}',
        '--window-size=1000,900',
    ):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=o)


def test_upload_in_a_browser_shows_the_verdict(served, world, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, uploads, *_ = served
    vid = sorted((world / 'ffpp/manipulated_sequences/Deepfakes/c23/videos').glob('*.mp4'))[0]
    b = browser(tmp_path / 'chrome')
    try:
        b.get(url)
        assert 'Is this face forged?' in b.page_source
        b.find_element(By.ID, 'file').send_keys(str(vid))
        t0 = time.time()
        b.find_element(By.ID, 'go').click()
        WebDriverWait(b, 120).until(lambda b: b.find_element(By.ID, 'verdict').text.strip())
        verdict = b.find_element(By.ID, 'verdict').text
        assert re.match(r'Likely (FAKE|REAL): P\(fake\) [\d.]+\n', verdict), verdict
        assert 'fixed on validation' in verdict and 'it says fake from' in verdict
        assert len(b.find_elements(By.CSS_SELECTOR, '#crops img')) >= 1
        assert 'P(fake)' in b.find_element(By.CSS_SELECTOR, '#crops figcaption').text  # each crop with its score
        assert len(b.find_elements(By.CSS_SELECTOR, '#chart circle')) == 4  # one point per sampled frame
        assert 'threshold' in b.find_element(By.ID, 'chart').text  # the threshold is drawn
        assert "trained on synthetic faces of dfnb's world" in b.page_source
        art = ROOT / 'data' / 'test-artifacts'
        art.mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(art / 'serve.png'))
        b.set_window_size(390, 1100)  # a phone's width: nothing wider than the screen
        assert b.execute_script('return document.documentElement.scrollWidth') <= 390
        b.save_screenshot(str(art / 'serve-390px.png'))
        b.set_window_size(1000, 900)
        print(f'upload to verdict {time.time() - t0:.2f} s; screenshots {art}/serve.png, serve-390px.png')
        assert [f.name for f in uploads.iterdir()] == ['server.pid']  # the upload is deleted once scored
        big = tmp_path / 'big.mp4'
        big.write_bytes(b'\0' * (2**20 + 10))
        b.find_element(By.ID, 'file').send_keys(str(big))
        b.find_element(By.ID, 'go').click()
        WebDriverWait(b, 30).until(lambda b: 'Refused' in b.find_element(By.ID, 'status').text)
        assert 'over the limit of 1.0 MB' in b.find_element(By.ID, 'status').text
    finally:
        b.quit()


def test_refuses_what_it_should(served):
    import http.client, json

    url, uploads, *_ = served
    port = int(url.rsplit(':', 1)[1].strip('/'))
    c = http.client.HTTPConnection('127.0.0.1', port)
    c.putrequest('POST', '/analyse?name=big.mp4')
    c.putheader('Content-Length', str(50 * 2**20))
    c.endheaders()  # no body sent: refused on its announced size
    r = c.getresponse()
    assert r.status == 413 and 'over the limit' in json.loads(r.read())['error']
    c.close()
    c = http.client.HTTPConnection('127.0.0.1', port)
    c.request('POST', '/analyse?name=../../x.sh', body=b'echo')
    r = c.getresponse()
    assert r.status == 415
    c.close()
    assert [f.name for f in uploads.iterdir()] == ['server.pid']


def test_one_file_one_verdict(served, world, tmp_path):
    "dfnb detect, the page, dfnb eval's per-video decisions and the exported ONNX model give one verdict, one P(fake)"
    import http.client, json
    import onnxruntime as ort
    import pandas as pd
    from dfnb.decisions import verdict
    from dfnb.detect import detect
    from dfnb.export import onnx_metadata

    url, _, _, run_dir = served
    vid = sorted((world / 'ffpp/manipulated_sequences/Deepfakes/c23/videos').glob('*.mp4'))[0]
    r = run('detect', vid, '--run', run_dir, '--frames', '4')
    assert r.returncode == 0, r.stderr
    det = json.loads(r.stdout)
    c = http.client.HTTPConnection('127.0.0.1', int(url.rsplit(':', 1)[1].strip('/')), timeout=300)
    c.request('POST', '/analyse?name=clip.mp4', body=vid.read_bytes())
    page = json.loads(c.getresponse().read())
    r = run(
        'prep',
        '--dataset',
        'ffpp',
        '--root',
        world / 'ffpp',
        '--out',
        tmp_path / 'real',
        '--frames',
        '4',
        '--size',
        '64',
        '--backend',
        'mediapipe+mtcnn',
    )  # the same frames, found by the detectors detect uses
    assert r.returncode == 0, r.stderr
    man = pd.read_parquet(tmp_path / 'real/manifest.parquet')
    vid_id = f'Deepfakes/{vid.stem}'
    split = man[man.video_id == vid_id].split.iloc[0]
    r = run(
        'eval',
        '--run',
        run_dir,
        '--data',
        f'real={tmp_path / "real"}',
        '--split',
        split,
        '--n-boot',
        '10',
        '--out',
        tmp_path / 'ev',
    )
    assert r.returncode == 0, r.stderr
    ev = pd.read_parquet(tmp_path / 'ev/real_videos.parquet').set_index('video_id').loc[vid_id]
    r = run('export', '--run', run_dir, '--onnx', tmp_path / 'm.onnx')
    assert r.returncode == 0, r.stderr
    meta = onnx_metadata(tmp_path / 'm.onnx')
    d = detect(vid, run_dir, frames=4, crops=True)  # the crops a consumer makes from the metadata's recipe
    main = [i for i, f in enumerate(d['faces']) if f['face'] == 0]
    probs = ort.InferenceSession(str(tmp_path / 'm.onnx')).run(None, {'image': d['crops'][main].numpy()})[0]
    onx = verdict(probs, meta['decisions'])
    print({k: (x['verdict'], x['prob']) for k, x in dict(detect=det, page=page, eval=ev, onnx=onx).items()})
    assert det['verdict'] == page['verdict'] == ev.verdict == onx['verdict']
    assert det['prob'] == page['prob'] and det['threshold'] == page['threshold']
    assert abs(ev.prob - det['prob']) < 1e-4 and abs(onx['prob'] - det['prob']) < 1e-4
    assert meta['decisions'] is not None and 'fixed on validation' in det['decided_by']
