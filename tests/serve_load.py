"""Not a test: `dfnb serve` under load (README's figures). Bounded loops on 127.0.0.1 only, stopping by themselves.

    python tests/serve_load.py RUN [--rounds 2] [--video FILE]

writes a 10-second Celeb-DF-like fake (250 frames at 25 fps) into a scratch folder (or takes FILE), serves RUN with
`dfnb serve` (its default queue and timeout, 16 frames a video), then for 1, 4 and 16 clients at once has each
client upload the video `rounds` times, one after the other; prints, per level, the answers by status, requests per
second and the latency percentiles of the answered uploads, and the server's resident memory (peak and now)."""

import argparse, http.client, re, subprocess, sys, tempfile, threading, time
from pathlib import Path

from page_latency import ten_second_fake  # this folder is on sys.path when the script runs


def memory_mb(pid):  # a process id
    "(peak, current) resident memory of a process in MB, from /proc"
    st = Path(f'/proc/{pid}/status').read_text()
    kb = lambda k: int(re.search(rf'^{k}:\s+(\d+) kB', st, re.M)[1])
    return round(kb('VmHWM') / 1024), round(kb('VmRSS') / 1024)


def upload(port, body):  # the server's port; the file's bytes
    "One upload: (status, seconds)"
    t0 = time.perf_counter()
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=600)
    try:
        c.request('POST', '/analyse?name=clip.mp4', body=body)
        r = c.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0
    except OSError as e:  # a reset or a refused connection would show here
        return type(e).__name__, time.perf_counter() - t0
    finally:
        c.close()


def level(port, body, clients, rounds):  # port; file bytes; clients at once; uploads per client
    "Every client's uploads, one after the other, all clients at once: the answers and the wall time"
    out = []
    lock = threading.Lock()

    def client():
        for _ in range(rounds):
            r = upload(port, body)
            with lock:
                out.append(r)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out, time.perf_counter() - t0


def pct(xs, q):  # values; a quantile in [0, 1]
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main(run, rounds=2, video=None):
    d = Path(tempfile.mkdtemp(prefix='dfnb-load-'))
    video = Path(video) if video else ten_second_fake(d / 'fake_10s.mp4')
    body = video.read_bytes()
    cmd = [sys.executable, '-m', 'dfnb.cli', 'serve', '--run', str(run), '--port', '0']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    while not line.startswith('serving'):
        line = p.stdout.readline()
    port = int(re.search(r'127\.0\.0\.1:(\d+)/', line)[1])
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # keep its log flowing
    upload(port, body)  # warm-up
    print(f'{video.name}, {len(body) / 2**20:.1f} MB; server: {line.strip()}')
    print(f'server memory after one upload (MB, peak / now): {memory_mb(p.pid)}')
    print(
        '| clients at once | uploads | answered 200 | 503 (retry) | other | wall s | answered/s | latency p50 / p90 '
        '/ max s (200s) | server memory peak / now MB |'
    )
    print('|---|---|---|---|---|---|---|---|---|')
    try:
        for clients in (1, 4, 16):
            res, wall = level(port, body, clients, rounds)
            ok = [t for s, t in res if s == 200]
            busy = sum(1 for s, _ in res if s == 503)
            other = len(res) - len(ok) - busy
            lat = f'{pct(ok, 0.5):.2f} / {pct(ok, 0.9):.2f} / {max(ok):.2f}' if ok else '-'
            peak, now = memory_mb(p.pid)
            print(
                f'| {clients} | {len(res)} | {len(ok)} | {busy} | {other} | {wall:.1f} | {len(ok) / wall:.2f} | '
                f'{lat} | {peak} / {now} |'
            )
    finally:
        p.terminate()
        p.wait(10)


if __name__ == '__main__':
    a = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    a.add_argument('run')
    a.add_argument('--rounds', type=int, default=2)
    a.add_argument('--video', default=None, help='the file to upload (default: a 10-second synthetic fake)')
    x = a.parse_args()
    main(x.run, x.rounds, x.video)
