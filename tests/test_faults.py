"""Fault injection: hostile and unlucky inputs, as a user meets them on the command line.

One section per class of issue 20 (1-12). Every case asserts the exit code, the one-line `dfnb: error:` message naming
the file and the fix, and that the files that must survive are still there byte for byte."""

import hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

PY = sys.executable
DFNB = [PY, '-c', 'import sys; from dfnb.cli import main; sys.exit(main())']
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def dfnb(*args, cwd=None, pre=''):
    "Run the dfnb command (optionally after a line of Python `pre`, e.g. to break an import)"
    cmd = [PY, '-c', f'import sys; {pre}; from dfnb.cli import main; sys.exit(main())'] if pre else DFNB
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=600, env=ENV, cwd=cwd)


def snapshot(root):
    "md5 of every file under `root` (the byte-for-byte state that must survive)"
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


def one_error(r, *parts):
    "A refused command: exit 2, no traceback, one `dfnb: error:` line holding every part"
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert 'Traceback' not in r.stderr, r.stderr
    line = [l for l in r.stderr.splitlines() if l.startswith('dfnb: error: ')]
    assert len(line) == 1, r.stderr
    for p in parts:
        assert p in line[0], (p, line[0])
    return line[0]


def victim(d):
    "A folder of a user's files that must survive"
    d = Path(d)
    (d / 'sub').mkdir(parents=True, exist_ok=True)
    (d / 'thesis.tex').write_text('\\section{results}\n')
    (d / 'sub/data.bin').write_bytes(os.urandom(1000))
    return snapshot(d)


@pytest.fixture(scope='module')
def run(world, tmp_path_factory):
    "A tiny run trained with a relative --data path from its own working directory"
    d = tmp_path_factory.mktemp('runs')
    r = dfnb(
        'prep',
        '--dataset',
        'ffpp',
        '--root',
        world / 'ffpp',
        '--out',
        d / 'p/ffpp',
        '--frames',
        '2',
        '--size',
        '64',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    r = dfnb(
        'train',
        '--method',
        'bce',
        '--data',
        'p/ffpp',
        '--out',
        'run',
        'steps=4',
        'val_every=2',
        'batch_size=8',
        'model.backbone=resnet10t',
        'model.size=64',
        'threads=1',
        '--no-progress',
        cwd=d,
    )
    assert r.returncode == 0, r.stderr
    return d


def put(src, dst):
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def a_video(world, k=0, fake=False):
    return sorted((world / 'cdf' / ('Celeb-synthesis' if fake else 'Celeb-real')).glob('*.mp4'))[k]


# 1. deletion outside the output folder -------------------------------------------------------------------------------


@pytest.mark.parametrize('vid', ['../../victim', '../victim_in', '/ABS/victim_in'])
def test_1_csv_ids_cannot_reach_outside(world, tmp_path, vid):
    ds = tmp_path / 'ds'
    put(a_video(world), ds / 'real/a.mp4')
    put(a_video(world, fake=True), ds / 'fake/b.mp4')
    vid = vid.replace('/ABS', str(ds.resolve()))
    before = {tmp_path / 'victim': victim(tmp_path / 'victim'), ds / 'victim_in': victim(ds / 'victim_in')}
    (ds / 'list.csv').write_text(f'path,label,video_id\nreal/a.mp4,0,{vid}\nfake/b.mp4,1,\n')
    r = dfnb('prep', '--dataset', 'csv', '--root', ds / 'list.csv', '--out', tmp_path / 'out/x/y', '--no-progress')
    one_error(r, 'list.csv, line 2', 'index files must give plain relative paths')
    for d, snap in before.items():
        assert snapshot(d) == snap
    assert not (tmp_path / 'out').exists()


def test_1_dfdc_preview_absolute_key_inside_the_dataset(world, tmp_path):
    ds = tmp_path / 'dfdcp'
    put(a_video(world), ds / 'original_videos/1/1_A/a.mp4')
    put(a_video(world, fake=True), ds / 'method_A/1/1_A/a.mp4')
    snap = victim(ds / 'method_A/keep')
    key = str((ds / 'method_A/keep').resolve())
    (ds / 'dataset.json').write_text(
        json.dumps(
            {key: {'label': 'fake', 'set': 'test'}, 'original_videos/1/1_A/a.mp4': {'label': 'real', 'set': 'test'}}
        )
    )
    r = dfnb('prep', '--dataset', 'dfdcp', '--root', ds, '--out', tmp_path / 'out', '--no-progress')
    one_error(r, 'dataset.json', 'is absolute')
    assert snapshot(ds / 'method_A/keep') == snap


def test_1_outputs_never_go_into_or_remove_a_users_folder(world, tmp_path):
    snap = victim(tmp_path / 'mine')
    r = dfnb(
        'prep',
        '--dataset',
        'cdf',
        '--root',
        world / 'cdf',
        '--out',
        tmp_path / 'mine',
        '--frames',
        '2',
        '--size',
        '64',
        '--no-progress',
    )
    one_error(r, str(tmp_path / 'mine'), 'did not write', 'new or empty output folder')
    r = dfnb('synth', '--out', tmp_path / 'mine', '--preset', 'tiny', '--worlds', 'cdf', '--no-progress')
    one_error(r, 'did not write')
    one_error(dfnb('train', '--data', tmp_path / 'nowhere', '--out', tmp_path / 'mine', 'steps=1'), 'did not write')
    one_error(dfnb('bench', '--preset', 'smoke', '--out', tmp_path / 'mine'), 'did not write')
    assert snapshot(tmp_path / 'mine') == snap


def test_1_a_stale_video_folder_is_removed_only_when_prep_wrote_all_of_it(world, tmp_path):
    ds, out = tmp_path / 'ds', tmp_path / 'out'
    put(a_video(world), ds / 'real/a.mp4')
    put(a_video(world, fake=True), ds / 'fake/b.mp4')
    args = [
        'prep',
        '--dataset',
        'folder',
        '--root',
        ds,
        '--out',
        out,
        '--frames',
        '2',
        '--size',
        '64',
        '--no-progress',
        '--backend',
        'mediapipe',
    ]
    assert dfnb(*args).returncode == 0
    (out / 'real/a/notes.txt').write_text('mine')  # a user's file inside a video folder
    os.utime(ds / 'real/a.mp4', ns=(1, 1))  # the source changed: the video must be redone
    man = (out / 'manifest.parquet').read_bytes()
    one_error(dfnb(*args), str(out / 'real/a'), 'notes.txt', 'refusing to replace it')
    assert (out / 'real/a/notes.txt').read_text() == 'mine' and (out / 'manifest.parquet').read_bytes() == man
    # a link inside the output folder that leads elsewhere is never followed
    snap = victim(tmp_path / 'elsewhere')
    shutil.rmtree(out / 'fake')
    (out / 'fake').symlink_to(tmp_path / 'elsewhere')
    (out / 'real/a/notes.txt').unlink()
    one_error(dfnb(*args), 'leads out of the output folder')
    assert snapshot(tmp_path / 'elsewhere') == snap


# 2. two inputs, one output folder; a damaged crop is re-made ---------------------------------------------------------


def test_2_nested_ids_are_refused_and_damaged_crops_remade(world, tmp_path):
    ds = tmp_path / 'ds'
    put(a_video(world), ds / 'real/clip.mp4')
    put(a_video(world, 1), ds / 'real/clip/0001.mp4')
    put(a_video(world, fake=True), ds / 'fake/f.mp4')
    one_error(
        dfnb('prep', '--dataset', 'folder', '--root', ds, '--out', tmp_path / 'o', '--no-progress'),
        'real/clip.mp4',
        'real/clip/0001.mp4',
        'rename or move one of them',
    )
    assert not (tmp_path / 'o').exists()
    put(a_video(world), ds / 'real/clip.avi')  # two files, one video id
    shutil.rmtree(ds / 'real/clip')
    one_error(
        dfnb('prep', '--dataset', 'folder', '--root', ds, '--out', tmp_path / 'o', '--no-progress'),
        "both map to video id 'real/clip'",
    )
    (ds / 'real/clip.avi').unlink()
    args = [
        'prep',
        '--dataset',
        'folder',
        '--root',
        ds,
        '--out',
        tmp_path / 'o',
        '--frames',
        '3',
        '--size',
        '64',
        '--backend',
        'mediapipe',
        '--no-progress',
    ]
    assert dfnb(*args).returncode == 0
    clean = snapshot(tmp_path / 'o')
    crop = sorted((tmp_path / 'o/real/clip').glob('*.png'))[0]
    crop.write_bytes(crop.read_bytes()[:100])  # damaged on disk
    r = dfnb(*args)
    assert r.returncode == 0 and '1 written, 1 already complete' in r.stdout, r.stdout
    now = snapshot(tmp_path / 'o')
    same = lambda snap: {k: v for k, v in snap.items() if 'report' not in k and not k.endswith('_video.json')}
    assert same(now) == same(clean)  # the crop re-made, byte for byte; the manifest too


# 3. CSV and DFDC-preview datasets from relative and linked roots ------------------------------------------------------


def test_3_csv_and_preview_from_relative_linked_roots(world, tmp_path):
    ds = tmp_path / 'ds'
    put(a_video(world), ds / 'real/a.mp4')
    put(a_video(world, fake=True), ds / 'fake/b.mp4')
    (ds / 'fake/linked.mp4').symlink_to(a_video(world, 1, fake=True))  # a linked file is read like any other
    (ds / 'list.csv').write_text('path,label\nreal/a.mp4,real\nfake/b.mp4,fake\nfake/linked.mp4,1\n')
    for root in ('ds/list.csv', str(ds / 'list.csv')):
        out = tmp_path / f'o{len(root)}'
        r = dfnb(
            'prep',
            '--dataset',
            'csv',
            '--root',
            root,
            '--out',
            out,
            '--frames',
            '2',
            '--size',
            '64',
            '--backend',
            'mediapipe',
            '--no-progress',
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        man = pd.read_parquet(out / 'manifest.parquet')
        assert set(man.video_id) == {'real/a', 'fake/b', 'fake/linked'} and (man.groupby('video_id').size() == 2).all()
    pv = tmp_path / 'pv'
    put(a_video(world), pv / 'original_videos/1/1_A/a.mp4')
    (pv / 'method_A/1/1_A').mkdir(parents=True)
    (pv / 'method_A/1/1_A/a.mp4').symlink_to(a_video(world, fake=True))
    (pv / 'dataset.json').write_text(
        json.dumps(
            {
                'original_videos/1/1_A/a.mp4': {'label': 'real', 'set': 'test'},
                'method_A/1/1_A/a.mp4': {'label': 'fake', 'set': 'test'},
            }
        )
    )
    (tmp_path / 'pv_link').symlink_to(pv)
    for root in ('pv', 'pv_link'):
        r = dfnb(
            'prep',
            '--dataset',
            'dfdcp',
            '--root',
            root,
            '--out',
            f'o_{root}',
            '--frames',
            '2',
            '--size',
            '64',
            '--backend',
            'mediapipe',
            '--no-progress',
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        assert len(pd.read_parquet(tmp_path / f'o_{root}/manifest.parquet')) == 4


# 4. detect: the same score from anywhere ------------------------------------------------------------------------------


def test_4_detect_scores_do_not_depend_on_where_it_runs(world, run, tmp_path):
    vid = a_video(world, fake=True)
    probs = []
    for cwd in (run, tmp_path, Path('/')):
        r = dfnb('detect', vid, '--run', run / 'run', '--frames', '3', cwd=cwd)
        assert r.returncode == 0, r.stderr
        probs.append(json.loads(r.stdout)['prob'])
    moved = tmp_path / 'moved'
    shutil.copytree(run, moved)
    shutil.move(str(moved / 'p'), str(tmp_path / 'data_elsewhere'))  # the training data moved away
    r = dfnb('detect', vid, '--run', moved / 'run', '--frames', '3', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    probs.append(json.loads(r.stdout)['prob'])
    assert len(set(probs)) == 1 and probs[0] is not None, probs
    # a run that does not record its crop settings is refused, not guessed; --prep names them
    ck = torch.load(moved / 'run/best.pt', weights_only=True)
    ck.pop('prep')
    torch.save(ck, moved / 'run/best.pt')
    one_error(dfnb('detect', vid, '--run', moved / 'run', '--frames', '3'), 'does not record how', '--prep DIR')
    r = dfnb('detect', vid, '--run', moved / 'run', '--frames', '3', '--prep', tmp_path / 'data_elsewhere/ffpp')
    assert r.returncode == 0 and json.loads(r.stdout)['prob'] == probs[0], r.stderr
    # --json writes a new file or its own earlier result, never a user's file
    (tmp_path / 'notes.json').write_text('{"mine": 1}')
    one_error(
        dfnb('detect', vid, '--run', run / 'run', '--json', tmp_path / 'notes.json'),
        'notes.json',
        'dfnb did not write it',
    )
    assert (tmp_path / 'notes.json').read_text() == '{"mine": 1}'
    for _ in range(2):
        assert dfnb('detect', vid, '--run', run / 'run', '--frames', '3', '--json', tmp_path / 'd.json').returncode == 0


# 5. incomplete datasets are counted, and stop where a split would be one-sided ----------------------------------------


def test_5_incomplete_datasets(world, tmp_path):
    ff = tmp_path / 'ffpp'
    shutil.copytree(world / 'ffpp', ff, symlinks=True)
    for sub in ('truth',):
        shutil.rmtree(ff / sub)  # a real dataset has no truth sidecars
    shutil.rmtree(ff / 'manipulated_sequences/Deepfakes')
    linked = tmp_path / 'fs_elsewhere'
    shutil.move(str(ff / 'manipulated_sequences/FaceSwap'), str(linked))
    (ff / 'manipulated_sequences/FaceSwap').symlink_to(linked)  # a method folder that is a link
    args = [
        'prep',
        '--dataset',
        'ffpp',
        '--root',
        ff,
        '--frames',
        '2',
        '--size',
        '64',
        '--backend',
        'mediapipe',
        '--no-progress',
    ]
    r = dfnb(*args, '--out', tmp_path / 'o1')
    assert r.returncode == 0, r.stderr
    assert 'missing: 2 expected inputs are not on disk' in r.stdout and 'Deepfakes' in r.stdout, r.stdout
    man = pd.read_parquet(tmp_path / 'o1/manifest.parquet')
    assert 'FaceSwap' in set(man.method) and 'Deepfakes' not in set(man.method)
    rep = json.loads((tmp_path / 'o1/prep_report.json').read_text())
    assert {m['what'] for m in rep['missing']} == {'Deepfakes', 'FaceShifter'}
    one_error(
        dfnb(*args, '--out', tmp_path / 'o2', '--methods', 'Deepfakes', 'FaceSwap'),
        'requested Deepfakes',
        '--allow-incomplete',
    )
    shutil.rmtree(ff / 'original_sequences')
    one_error(dfnb(*args, '--out', tmp_path / 'o3'), 'would have no real videos', '--allow-incomplete')
    assert not (tmp_path / 'o3').exists()
    assert dfnb(*args, '--out', tmp_path / 'o3', '--allow-incomplete').returncode == 0
    cdf = tmp_path / 'cdf'
    shutil.copytree(world / 'cdf', cdf)
    gone = (cdf / 'List_of_testing_videos.txt').read_text().split('\n')[0].split(' ', 1)[1]
    (cdf / gone).unlink()
    r = dfnb(
        'prep',
        '--dataset',
        'cdf',
        '--root',
        cdf,
        '--out',
        tmp_path / 'oc',
        '--frames',
        '2',
        '--size',
        '64',
        '--no-progress',
    )
    assert r.returncode == 0 and 'missing: 1 expected inputs' in r.stdout and gone in r.stdout, r.stdout


# 6. two test sets with one name ---------------------------------------------------------------------------------------


def test_6_eval_refuses_two_sets_with_one_name(world, run, tmp_path):
    for k in (0, 1):
        ds = tmp_path / f'ds{k}'
        put(a_video(world, k), ds / 'real/a.mp4')
        put(a_video(world, k, fake=True), ds / 'fake/b.mp4')
        r = dfnb(
            'prep',
            '--dataset',
            'folder',
            '--root',
            ds,
            '--out',
            tmp_path / f'p{k}',
            '--frames',
            '2',
            '--size',
            '64',
            '--backend',
            'mediapipe',
            '--no-progress',
        )
        assert r.returncode == 0, r.stderr
    out = tmp_path / 'ev'
    one_error(
        dfnb('eval', '--run', run / 'run', '--data', tmp_path / 'p0', tmp_path / 'p1', '--n-boot', '0', '--out', out),
        "are all named 'folder'",
        '--data a=DIR b=DIR',
    )
    r = dfnb(
        'eval',
        '--run',
        run / 'run',
        '--data',
        f'a={tmp_path / "p0"}',
        f'b={tmp_path / "p1"}',
        '--n-boot',
        '0',
        '--out',
        out,
    )
    assert r.returncode == 0, r.stderr
    res = {n: json.loads((out / f'{n}.json').read_text())['setup']['test_data'] for n in ('a', 'b')}
    assert res == {'a': str((tmp_path / 'p0').resolve()), 'b': str((tmp_path / 'p1').resolve())}
    a = (out / 'a.json').read_bytes()
    one_error(
        dfnb('eval', '--run', run / 'run', '--data', f'a={tmp_path / "p1"}', '--n-boot', '0', '--out', out),
        'a.json holds results for',
    )
    assert (out / 'a.json').read_bytes() == a


# 7. one line instead of a traceback -----------------------------------------------------------------------------------


def test_7_detect_checks_its_input_first(run, tmp_path):
    (tmp_path / 'empty.mp4').write_bytes(b'')
    (tmp_path / 'notes.txt').write_text('x')
    (tmp_path / 'noise.mp4').write_bytes(os.urandom(5000))
    for path, msg in (
        (tmp_path / 'missing.mp4', 'does not exist'),
        (tmp_path / 'empty.mp4', 'is an empty file'),
        (tmp_path / 'notes.txt', 'not a video or image file'),
        (tmp_path, 'is a folder'),
        (tmp_path / 'noise.mp4', 'give a readable video or image'),
    ):
        one_error(dfnb('detect', path, '--run', run / 'run'), str(path), msg)


PAYLOAD = "import pathlib; pathlib.Path({!r}).write_text('ran')"


class Payload:
    def __init__(self, f):
        self.f = f

    def __reduce__(self):
        return (exec, (PAYLOAD.format(self.f),))


def test_7_unsafe_checkpoint_and_yaml_are_refused_naming_the_file(run, tmp_path):
    bad = tmp_path / 'run'
    shutil.copytree(run / 'run', bad)
    torch.save({'model': Payload(str(tmp_path / 'pwned')), 'method': 'bce'}, bad / 'best.pt')
    line = one_error(
        dfnb('eval', '--run', bad, '--data', run / 'p/ffpp', '--n-boot', '0'), str(bad / 'best.pt'), 'dfnb refuses it'
    )
    assert 'weights_only=False' not in line and 'weights_only` set to `False' not in line
    (bad / 'junk.pt').write_bytes(b'PK\x03\x04 truncated')
    one_error(
        dfnb('eval', '--run', bad / 'junk.pt', '--data', run / 'p/ffpp', '--n-boot', '0'),
        str(bad / 'junk.pt'),
        'not a readable PyTorch checkpoint',
    )
    y = tmp_path / 'evil.yaml'
    y.write_text(f"steps: !!python/object/apply:exec [\"{PAYLOAD.format(str(tmp_path / 'pwned'))}\"]\n")
    one_error(dfnb('train', '--config', y, '--data', run / 'p/ffpp', '--out', tmp_path / 'r'), str(y), '!!python')
    assert not (tmp_path / 'pwned').exists()


def _tmpfs_ok():
    if shutil.which('unshare') is None or os.geteuid() != 0:
        return False
    r = subprocess.run(['unshare', '-m', 'sh', '-c', 'mount -t tmpfs -o size=64k none /mnt'], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _tmpfs_ok(), reason='needs root and unshare to mount a small tmpfs (a full disk)')
def test_7_disk_full_is_said_plainly(world, run, tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    cli = ' '.join(f"'{a}'" for a in DFNB)

    def on_small_disk(size, args):
        cmd = f'mount -t tmpfs -o size={size} none {small} && {cli} ' + ' '.join(map(str, args))
        return subprocess.run(['unshare', '-m', 'sh', '-c', cmd], capture_output=True, text=True, timeout=600, env=ENV)

    r = on_small_disk(
        '1m',
        [
            'train',
            '--method',
            'bce',
            '--data',
            run / 'p/ffpp',
            '--out',
            small / 'run',
            'steps=4',
            'val_every=2',
            'batch_size=8',
            'model.backbone=resnet10t',
            'model.size=64',
            'threads=1',
            '--no-progress',
        ],
    )
    line = one_error(r, 'disk full', str(small / 'run'), 'free space')
    assert 'enforce fail' not in line and 'unexpected pos' not in line
    r = on_small_disk(
        '200k',
        [
            'prep',
            '--dataset',
            'ffpp',
            '--root',
            world / 'ffpp',
            '--out',
            small / 'p',
            '--frames',
            '8',
            '--size',
            '256',
            '--no-progress',
        ],
    )
    one_error(r, 'disk full', str(small / 'p'), 'free space')


# 8. concurrency and cleanup -------------------------------------------------------------------------------------------


def descendants(pid):
    "Every live descendant of `pid`, from /proc"
    kids, parent = set(), {}
    for p in Path('/proc').iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    todo = [pid]
    while todo:
        x = todo.pop()
        for c, pp in parent.items():
            if pp == x and c not in kids:
                kids.add(c)
                todo.append(c)
    return kids


def alive(pid):
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return False
    return state != 'Z'


def test_8_two_preps_on_one_out_and_kill_9_leaves_no_workers(world, tmp_path):
    out = tmp_path / 'o'
    args = [
        'prep',
        '--dataset',
        'ffpp',
        '--root',
        world / 'ffpp',
        '--out',
        out,
        '--frames',
        '8',
        '--size',
        '128',
        '--backend',
        'mediapipe',
        '--workers',
        '2',
        '--no-progress',
    ]
    two = [
        subprocess.Popen(
            DFNB + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        for _ in range(2)
    ]
    rs = [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in two]
    assert sorted(r.returncode for r in rs) == [0, 2], [r.stderr[-500:] for r in rs]
    one_error(next(r for r in rs if r.returncode), 'another dfnb prep is writing to', str(out))
    shutil.rmtree(out)
    p = subprocess.Popen(DFNB + [str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    while len(list(out.rglob('_video.json'))) < 1 and time.time() - t0 < 300 and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, 'the prep finished before it could be killed: make it longer'
    kids = descendants(p.pid)
    assert kids, 'the prep started no worker processes'
    p.send_signal(signal.SIGKILL)
    p.wait()
    t0 = time.time()
    while any(alive(k) for k in kids) and time.time() - t0 < 10:
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)], 'workers outlived their killed parent'
    r = dfnb(*args)  # the lock died with its holder: the rerun resumes
    assert r.returncode == 0 and 'already complete' in r.stdout, r.stderr


def test_8_restart_before_the_first_checkpoint_does_not_duplicate_logs(run, tmp_path):
    out = tmp_path / 'r'
    args = [
        'train',
        '--method',
        'bce',
        '--data',
        run / 'p/ffpp',
        '--out',
        out,
        'steps=200',
        'val_every=200',
        'log_every=1',
        'batch_size=8',
        'model.backbone=resnet10t',
        'model.size=64',
        'threads=1',
        '--no-progress',
    ]
    p = subprocess.Popen(DFNB + [str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    while (
        not ((out / 'train.csv').exists() and len((out / 'train.csv').read_text().splitlines()) > 3)
        and time.time() - t0 < 300
        and p.poll() is None
    ):
        time.sleep(0.02)
    assert p.poll() is None and not (out / 'last.pt').exists(), 'killed too late: make the run longer'
    p.kill()
    p.wait()
    r = dfnb(*args)
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(out / 'train.csv').step.tolist() == list(range(1, 201))


# 9. odd values --------------------------------------------------------------------------------------------------------


def test_9_odd_values_are_refused(world, run, tmp_path):
    base = ['prep', '--dataset', 'cdf', '--root', world / 'cdf', '--out', tmp_path / 'o', '--no-progress']
    one_error(dfnb(*base, '--size', '0'), '--size 0', 'from 16 to 4096')
    one_error(dfnb(*base, '--size', '-5'), '--size -5')
    one_error(dfnb(*base, '--frames', '0'), '--frames 0', 'whole number from 1')
    one_error(dfnb(*base, '--margin', 'nan'), '--margin nan')
    assert not (tmp_path / 'o').exists()
    one_error(dfnb('train', '--data', run / 'p/ffpp', '--out', tmp_path / 'r', 'steps=0'), 'steps=0', 'at least 1')
    one_error(dfnb('train', '--data', run / 'p/ffpp', '--out', tmp_path / 'r', 'steps=many'), "'steps'", 'many')
    assert not (tmp_path / 'r').exists()


def test_9_non_utf8_names_are_skipped_and_reported(world, tmp_path):
    ds = tmp_path / 'ds'
    put(a_video(world), ds / 'real/a.mp4')
    put(a_video(world, fake=True), ds / 'fake/b.mp4')
    bad = os.path.join(os.fsencode(ds / 'fake'), b'caf\xe9.mp4')
    shutil.copy(a_video(world, 1, fake=True), bad)
    r = dfnb(
        'prep',
        '--dataset',
        'folder',
        '--root',
        ds,
        '--out',
        tmp_path / 'o',
        '--frames',
        '2',
        '--size',
        '64',
        '--backend',
        'mediapipe',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    assert 'skipped: 1 files left out' in r.stdout and 'caf\\xe9.mp4' in r.stdout and 'not valid UTF-8' in r.stdout
    assert set(pd.read_parquet(tmp_path / 'o/manifest.parquet').video_id) == {'real/a', 'fake/b'}


def test_9_a_second_dataset_never_replaces_a_preparation(world, tmp_path):
    out = tmp_path / 'o'
    assert (
        dfnb(
            'prep',
            '--dataset',
            'cdf',
            '--root',
            world / 'cdf',
            '--out',
            out,
            '--frames',
            '2',
            '--size',
            '64',
            '--no-progress',
        ).returncode
        == 0
    )
    snap = snapshot(out)
    one_error(
        dfnb(
            'prep',
            '--dataset',
            'ffpp',
            '--root',
            world / 'ffpp',
            '--out',
            out,
            '--frames',
            '2',
            '--size',
            '64',
            '--no-progress',
        ),
        str(out),
        "'cdf' there, 'ffpp' now",
    )
    one_error(
        dfnb(
            'prep',
            '--dataset',
            'cdf',
            '--root',
            world / 'cdf',
            '--out',
            out,
            '--frames',
            '4',
            '--size',
            '64',
            '--no-progress',
        ),
        'other settings',
        'choose another output folder',
    )
    assert snapshot(out) == snap


def test_9_nan_message_is_true_and_its_advice_works(run, tmp_path):
    args = [
        'train',
        '--method',
        'bce',
        '--data',
        run / 'p/ffpp',
        'steps=4',
        'val_every=4',
        'batch_size=8',
        'model.backbone=resnet10t',
        'model.size=64',
        'threads=1',
        '--no-progress',
    ]
    r = dfnb(*args, '--out', tmp_path / 'n', 'lr=1e30')
    assert r.returncode == 3 and 'no checkpoint was written yet' in r.stderr and 'new --out' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and not (tmp_path / 'n/last.pt').exists()
    assert dfnb(*args, '--out', tmp_path / 'n2', 'lr=1e-3').returncode == 0  # the advice: a new --out, a lower lr


# 10. small faces ------------------------------------------------------------------------------------------------------


def two_people(h=720, w=1280, face_px=90):
    "A 1280x720 frame with two copies of the astronaut photo's head and shoulders, faces about `face_px` wide"
    from skimage.data import astronaut

    im = astronaut()
    part = im[0:300, 100:360]  # her face is about 100 px wide in this crop
    s = face_px / 100
    part = cv2.resize(part, (round(260 * s), round(300 * s)), interpolation=cv2.INTER_AREA)
    frame = np.tile(np.linspace(60, 160, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    ph, pw = part.shape[:2]
    frame[200 : 200 + ph, 250 : 250 + pw] = part
    frame[260 : 260 + ph, 850 : 850 + pw] = part[:, ::-1]
    return frame


def test_10_small_faces_with_the_default_backend(tmp_path):
    from skimage.data import chelsea

    ds = tmp_path / 'ds'
    (ds / 'real').mkdir(parents=True)
    (ds / 'fake').mkdir()
    cv2.imwrite(str(ds / 'real/two.png'), cv2.cvtColor(two_people(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(ds / 'fake/cat.png'), cv2.cvtColor(chelsea(), cv2.COLOR_RGB2BGR))
    r = dfnb(
        'prep',
        '--dataset',
        'folder',
        '--root',
        ds,
        '--out',
        tmp_path / 'o',
        '--all-faces',
        '--size',
        '64',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    man = pd.read_parquet(tmp_path / 'o/manifest.parquet')
    two = man[man.video_id == 'real/two']
    assert len(two) == 2 and sorted(two.face_idx) == [0, 1]
    assert ((two.x1 - two.x0) > 60).all() and ((two.x1 - two.x0) < 130).all()
    assert 'fake/cat' not in set(man.video_id)
    rep = json.loads((tmp_path / 'o/prep_report.json').read_text())
    assert [f['reason'] for f in rep['failed']] == ['no_face']
    h = dfnb('prep', '--help')
    assert 'auto (sidecar for a dfnb synthetic world' in ' '.join(h.stdout.split()) and 'full-range' in h.stdout


# 11. MTCNN after the README install -----------------------------------------------------------------------------------

BLOCKED_IMPORT = """
import importlib.abc, importlib.metadata as md, json, re, sys
allowed = set(json.loads(sys.argv[1]))
dist_of = md.packages_distributions()
norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
class OnlyInstalled(importlib.abc.MetaPathFinder):
    "Imports fail for packages the README install would not bring (as on a fresh machine)"
    def find_spec(self, name, path, target=None):
        top = name.split('.')[0]
        ds = dist_of.get(top)
        if ds and not any(norm(d) in allowed for d in ds):
            raise ModuleNotFoundError(f'No module named {top!r}', name=top)
sys.meta_path.insert(0, OnlyInstalled())
from dfnb.prep import MTCNNFaces, MediaPipeFaces
MTCNNFaces(); MediaPipeFaces()
print('both backends built')
"""


def readme_install(drop=()):
    "The distributions `pip install -e .` and `pip install --no-deps -r face-backends.txt` bring (less `drop`)"
    import importlib.metadata as md, re

    norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
    seen, todo = set(), ['dfnb']
    while todo:
        n = norm(todo.pop())
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = md.requires(n) or []
        except md.PackageNotFoundError:
            continue
        todo += [re.split(r'[ ;<>=!~\[(]', r, maxsplit=1)[0] for r in reqs if 'extra ==' not in r]
    txt = (Path(__file__).parents[1] / 'face-backends.txt').read_text().splitlines()
    listed = {norm(l.split('==')[0]) for l in txt if l.strip() and not l.startswith('#')}
    return sorted((seen | listed) - {norm(d) for d in drop})


def test_11_face_backends_need_only_what_the_readme_installs():
    "Both backends import and build with only the distributions that README's install brings"
    r = subprocess.run(
        [PY, '-c', BLOCKED_IMPORT, json.dumps(readme_install())], capture_output=True, text=True, env=ENV
    )
    assert r.returncode == 0 and 'both backends built' in r.stdout, r.stderr[-2000:]
    r = subprocess.run(
        [PY, '-c', BLOCKED_IMPORT, json.dumps(readme_install(drop=['requests']))],
        capture_output=True,
        text=True,
        env=ENV,
    )  # the check can fail: without requests, MTCNN cannot import
    assert r.returncode != 0 and "No module named 'requests'" in r.stderr, r.stderr[-2000:]


def test_11_a_broken_dependency_is_named(world, tmp_path):
    r = dfnb(
        'prep',
        '--dataset',
        'cdf',
        '--root',
        world / 'cdf',
        '--out',
        tmp_path / 'o',
        '--backend',
        'mtcnn',
        '--no-progress',
        pre="sys.modules['requests'] = None",
    )
    one_error(r, 'facenet_pytorch is installed but importing it failed', 'requests', 'pip install requests')
    r = dfnb(
        'prep',
        '--dataset',
        'cdf',
        '--root',
        world / 'cdf',
        '--out',
        tmp_path / 'o',
        '--backend',
        'mtcnn',
        '--frames',
        '2',
        '--size',
        '64',
        '--no-progress',
    )
    assert r.returncode == 0 and 'mtcnn backend' in r.stdout, r.stderr


# 12. the usual FF++ protocol ------------------------------------------------------------------------------------------


def test_12_ffpp_methods_root_splits_and_still_images(world, run, tmp_path):
    ff = tmp_path / 'ffpp'
    shutil.copytree(world / 'ffpp', ff)
    for f in (ff / 'splits').iterdir():
        shutil.move(str(f), str(ff / f.name))  # split files at the FF++ root
    (ff / 'splits').rmdir()
    three = ['Deepfakes', 'Face2Face', 'FaceSwap']
    r = dfnb(
        'prep',
        '--dataset',
        'ffpp',
        '--root',
        ff,
        '--out',
        tmp_path / 'o',
        '--frames',
        '2',
        '--size',
        '64',
        '--methods',
        *three,
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    assert set(pd.read_parquet(tmp_path / 'o/manifest.parquet').method) == {'real', *three}
    r = dfnb(
        'train',
        '--method',
        'bce',
        '--data',
        run / 'p/ffpp',
        '--out',
        tmp_path / 'r',
        '--methods',
        'Deepfakes',
        'FaceSwap',
        'steps=2',
        'val_every=2',
        'batch_size=8',
        'model.backbone=resnet10t',
        'model.size=64',
        'threads=1',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    import yaml

    assert yaml.safe_load((tmp_path / 'r/config.yaml').read_text())['methods'] == ['Deepfakes', 'FaceSwap']
    ds = tmp_path / 'ds'
    put(a_video(world), ds / 'real/a.mp4')
    (ds / 'fake').mkdir()
    cv2.imwrite(str(ds / 'fake/still.png'), cv2.cvtColor(two_people(), cv2.COLOR_RGB2BGR))
    r = dfnb(
        'prep',
        '--dataset',
        'folder',
        '--root',
        ds,
        '--out',
        tmp_path / 'oi',
        '--frames',
        '8',
        '--size',
        '64',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / 'oi/prep_report.json').read_text())
    assert 'short_video' not in rep['frames']['skipped_by_reason'] and rep['frames']['requested'] == 8 + 1


# more hostile inputs --------------------------------------------------------------------------------------------------


def test_more_a_spreadsheet_csv_and_a_broken_manifest(world, run, tmp_path):
    ds = tmp_path / 'ds'
    put(a_video(world), ds / 'real/a.mp4')
    put(a_video(world, fake=True), ds / 'fake/b.mp4')
    (ds / 'list.csv').write_bytes('\ufeffpath,label\r\nreal/a.mp4,0\r\nfake/b.mp4,1\r\n'.encode('utf-8'))  # Excel's CSV
    r = dfnb(
        'prep',
        '--dataset',
        'csv',
        '--root',
        ds / 'list.csv',
        '--out',
        tmp_path / 'o',
        '--frames',
        '2',
        '--size',
        '64',
        '--backend',
        'mediapipe',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    one_error(
        dfnb('prep', '--dataset', 'folder', '--root', ds, '--out', ds / 'prep', '--no-progress'),
        'lies inside the dataset folder',
    )
    bad = tmp_path / 'bad'
    shutil.copytree(run / 'p/ffpp', bad)
    (bad / 'manifest.parquet').write_bytes(b'garbage')
    one_error(
        dfnb('train', '--data', bad, '--out', tmp_path / 'r', 'steps=1'),
        str(bad / 'manifest.parquet'),
        'rerun `dfnb prep`',
    )
    shutil.copy(run / 'p/ffpp/manifest.parquet', bad / 'manifest.parquet')
    (bad / 'prep_report.json').write_text('{')
    one_error(dfnb('train', '--data', bad, '--out', tmp_path / 'r2', 'steps=1'), str(bad / 'prep_report.json'))


# 13. issue 30: the last silent answers --------------------------------------------------------------------------------

TINY = ['steps=2', 'val_every=2', 'batch_size=8', 'model.backbone=resnet10t', 'model.size=64', 'threads=1']


def test_13_numbers_are_finite_and_in_range(run, tmp_path):
    "One case each on the command line; every setting's own cases are in 07_detectors.base, 08_train and 10c_serve"
    base = ['train', '--method', 'bce', '--data', run / 'p/ffpp', '--out', tmp_path / 'r', '--no-progress', *TINY]
    one_error(dfnb(*base, 'model.size=-3'), 'model.size=-3 must be a whole number of pixels from 16 to 4096')
    one_error(dfnb(*base, 'weight_decay=nan'), 'weight_decay=nan must be a finite number')
    assert not (tmp_path / 'r').exists()  # refused before the run folder is made
    r = dfnb('serve', '--run', run / 'run', '--max-mb', 'nan')
    one_error(r, '--max-mb nan: give a number')
    assert 'loading' not in r.stdout  # refused before anything is loaded or bound


def test_13_weights_of_a_larger_network_are_refused(run, tmp_path):
    import timm

    torch.save(timm.create_model('resnet34', num_classes=0).state_dict(), tmp_path / 'r34.pt')
    r = dfnb(
        'train',
        '--data',
        run / 'p/ffpp',
        '--out',
        tmp_path / 'r',
        *TINY,
        'model.backbone=resnet18',
        f'model.pretrained={tmp_path / "r34.pt"}',
        '--no-progress',
    )
    one_error(r, 'r34.pt holds', 'weights that backbone resnet18 does not have', 'layer1.2.')


def test_13_attributes_that_match_no_video_and_a_linked_method_folder(world, run, tmp_path):
    ev = ['eval', '--run', run / 'run', '--data', run / 'p/ffpp', '--n-boot', '5']
    (tmp_path / 'none.csv').write_text('video_id,site\nclip-01,a\nclip-02,b\n')
    one_error(
        dfnb(*ev, '--out', tmp_path / 'e1', '--attributes', tmp_path / 'none.csv'),
        'none.csv',
        'none of its 2 video ids matches',
    )
    vids = pd.read_parquet(run / 'p/ffpp/manifest.parquet').query("split == 'test'").video_id.unique()
    (tmp_path / 'some.csv').write_text('video_id,site\n' + f'{vids[0]},a\n{vids[1]},b\n')
    r = dfnb(*ev, '--out', tmp_path / 'e2', '--attributes', tmp_path / 'some.csv')
    assert r.returncode == 0 and f'attributes for 2 of the {len(vids)} videos' in r.stdout, r.stderr
    ds = tmp_path / 'ds'  # a folder dataset whose fake method folder is a symbolic link: read, not left out
    put(a_video(world), ds / 'real/a.mp4')
    put(a_video(world, fake=True), tmp_path / 'elsewhere/Deepfakes/b.mp4')
    (ds / 'fake').mkdir()
    (ds / 'fake/Deepfakes').symlink_to(tmp_path / 'elsewhere/Deepfakes', target_is_directory=True)
    r = dfnb(
        'prep',
        '--dataset',
        'folder',
        '--root',
        ds,
        '--out',
        tmp_path / 'p',
        '--frames',
        '2',
        '--size',
        '64',
        '--backend',
        'mediapipe',
        '--no-progress',
    )
    assert r.returncode == 0, r.stderr
    assert set(pd.read_parquet(tmp_path / 'p/manifest.parquet').video_id) == {'real/a', 'fake/Deepfakes/b'}


def test_13_damaged_files_and_missing_configs_are_named(run, tmp_path):
    ev = ['eval', '--data', run / 'p/ffpp', '--n-boot', '5']
    (tmp_path / 'e').mkdir()
    (tmp_path / 'e/ffpp.json').write_text('{"setup": {"test_data": ')
    one_error(
        dfnb(*ev, '--run', run / 'run', '--out', tmp_path / 'e'), str(tmp_path / 'e/ffpp.json'), 'is not readable JSON'
    )
    shutil.copytree(run / 'run', tmp_path / 'bare')
    (tmp_path / 'bare/config.yaml').unlink()
    one_error(
        dfnb(*ev, '--run', tmp_path / 'bare', '--out', tmp_path / 'e2'),
        str(tmp_path / 'bare/config.yaml'),
        'is missing',
        'incomplete run folder',
    )
    r = dfnb('bench', '--preset', 'smoke', '--claims-from', tmp_path / 'nowhere', '--out', tmp_path / 'b')
    one_error(r, 'nowhere is not a folder')
    assert not (tmp_path / 'b').exists()  # refused before any world is written or any run trained


def test_13_a_failed_write_names_the_file_and_the_cause(run, tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    cli = ' '.join(f"'{a}'" for a in DFNB)

    def on_small_disk(size, args):
        cmd = f'mount -t tmpfs -o size={size} none {small} && {cli} ' + ' '.join(map(str, args))
        return subprocess.run(['unshare', '-m', 'sh', '-c', cmd], capture_output=True, text=True, timeout=600, env=ENV)

    one_error(
        on_small_disk('20k', ['export', '--run', run / 'run', '--onnx', small / 'm.onnx']),
        'disk full',
        str(small / 'm.onnx'),
        'free space',
    )
    one_error(
        on_small_disk(
            '12k', ['eval', '--run', run / 'run', '--data', run / 'p/ffpp', '--n-boot', '5', '--out', small / 'e']
        ),
        'disk full',
        str(small / 'e'),
        'free space',
    )
    one_error(
        dfnb('export', '--run', run / 'run', '--onnx', tmp_path / 'no/such/folder/m.onnx'),
        'the folder it goes into does not exist',
        str(tmp_path / 'no/such/folder/m.onnx'),
    )


def test_13_a_training_that_diverges_says_so_at_the_right_step(run, tmp_path):
    plugin = tmp_path / 'poisoned.py'
    plugin.write_text(
        'import torch\n'
        'from dfnb.core import DETECTORS\n'
        'from dfnb.detectors.base import BCEDetector\n\n\n'
        "@DETECTORS.register('poisoned')\n"
        'class Poisoned(BCEDetector):\n'
        '    calls = 0\n\n'
        '    def losses(self, batch, out):\n'
        '        Poisoned.calls += 1\n'
        '        if Poisoned.calls == 2:  # the second update leaves the weights NaN; its loss was finite\n'
        '            with torch.no_grad():\n'
        "                self.head.weight.fill_(float('nan'))\n"
        '        return super().losses(batch, out)\n'
    )
    r = dfnb(
        '--plugin',
        plugin,
        'train',
        '--method',
        'poisoned',
        '--data',
        run / 'p/ffpp',
        '--out',
        tmp_path / 'r',
        *TINY,
        '--no-progress',
    )
    assert r.returncode == 3 and 'Traceback' not in r.stderr, r.stderr
    assert 'the training diverged at step 2: the model outputs NaN on' in r.stderr, r.stderr
    assert 'drop the frames' not in r.stderr
