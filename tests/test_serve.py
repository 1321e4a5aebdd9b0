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
    line = p.stdout.readline()
    m = re.search(r'on (http://127\.0\.0\.1:\d+/) \(uploads in (.+?),', line)
    assert m, line
    yield m[1], Path(m[2]), p
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

    url, uploads, _ = served
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
        assert re.match(
            r'(FAKE|REAL) \(P\(fake\) [\d.]+, calibrated; video score [\d.]+ by the \w+ rule', verdict
        ), verdict
        assert 'fixed on validation' in verdict
        assert len(b.find_elements(By.CSS_SELECTOR, '#crops img')) >= 1
        assert len(b.find_elements(By.CSS_SELECTOR, '#chart circle')) == 4  # one point per sampled frame
        art = ROOT / 'data' / 'test-artifacts'
        art.mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(art / 'serve.png'))
        print(f'upload to verdict {time.time() - t0:.2f} s; screenshot {art / "serve.png"}')
        assert list(uploads.iterdir()) == []  # deleted once scored
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

    url, uploads, _ = served
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
    assert list(uploads.iterdir()) == []
