"""Not a test: the page's time from upload to verdict for a 10-second video, in headless Chromium (README's figure).

    python tests/page_latency.py RUN [SCREENSHOT.png]

writes a 10-second Celeb-DF-like fake (250 frames at 25 fps, 256 px high) into a scratch folder, serves RUN with
`dfnb serve`, uploads the video three times and prints each time and their median."""

import re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dfnb.core import derive_seed, rng
from dfnb.synth import CDF_CRF, fake_clip, make_clip, make_identity, sample_knobs, write_video
from test_serve import browser  # this folder is on sys.path when the script runs


def ten_second_fake(path):  # where to write it
    "A 10-second Celeb-DF-like deepfake: 250 frames at 25 fps"
    c = make_clip(7, 'cdf', 'demo-target', 'demo-clip', 250, 256)
    ident, tex = make_identity(7, 'cdf', 'demo-source')
    k = sample_knobs('CelebDF', rng(7, 'demo'))
    fr, _, _ = fake_clip('CelebDF', c, dict(ident=ident, tex=tex), k, derive_seed(7, 'demo'))
    write_video(path, fr, CDF_CRF, fps=25)
    return path


def main(run, shot=None):
    d = Path(tempfile.mkdtemp(prefix='dfnb-latency-'))
    vid = ten_second_fake(d / 'fake_10s.mp4')
    cmd = [sys.executable, '-m', 'dfnb.cli', 'serve', '--run', run, '--port', '0']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    while not line.startswith('serving'):  # after the loading line
        line = p.stdout.readline()
    url = re.search(r'on (http://\S+/) ', line)[1]
    b = browser(d / 'chrome')  # the browser test's own headless Chromium
    ts = []
    try:
        b.get(url)
        for _ in range(3):
            b.refresh()
            b.find_element(By.ID, 'file').send_keys(str(vid))
            t0 = time.time()
            b.find_element(By.ID, 'go').click()
            WebDriverWait(b, 300).until(lambda b: b.find_element(By.ID, 'verdict').text.strip())
            ts.append(time.time() - t0)
        print('verdict:', b.find_element(By.ID, 'verdict').text)
        print('status:', b.find_element(By.ID, 'status').text)
        if shot:
            b.save_screenshot(shot)
    finally:
        b.quit()
        p.terminate()
    print(f'upload to verdict (s): {[round(t, 2) for t in ts]}, median {statistics.median(ts):.2f}')


if __name__ == '__main__':
    main(*sys.argv[1:])
