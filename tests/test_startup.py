"""`dfnb --help` and every command's `--help` in a fresh interpreter: torch and the other slow imports stay out."""

import json, subprocess, sys

HEAVY = ('torch', 'torchvision', 'sklearn', 'scipy', 'timm', 'mediapipe', 'facenet_pytorch', 'pandas', 'matplotlib')
HELP = f'''
import contextlib, io, json, sys
from dfnb.cli import main, parser

commands = list(parser()._subparsers._group_actions[0].choices)
helps = {{}}
for argv in [['--help']] + [[c, '--help'] for c in commands]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(argv)
    helps[' '.join(argv)] = out.getvalue()
print(json.dumps(dict(helps=helps, heavy=sorted(m for m in {HEAVY!r} if m in sys.modules))))
'''


def test_help_imports_no_torch():
    r = subprocess.run([sys.executable, '-c', HELP], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['heavy'] == [], f'--help imported {res["heavy"]}'
    helps = res['helps']
    assert len(helps) >= 13, sorted(helps)  # dfnb and its twelve commands
    for cmd in ('detect', 'train', 'bench', 'serve', 'import'):
        assert helps[f'{cmd} --help'].startswith(f'usage: dfnb {cmd}'), helps[f'{cmd} --help'][:200]
    assert '(default: 1000)' in helps['eval --help']  # EvalSettings.n_boot, read from its source
    assert 'smoke,quick,paper' in helps['bench --help'].replace(' ', '')  # a constant of dfnb.bench, read
