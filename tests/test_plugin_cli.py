"""A detector of one's own, written in a few lines and benchmarked with `dfnb bench --plugin`: the contract's minimum
(`logits` and `prob`, no `feat`) is enough for the report, and what needs features says why it has no figures."""

import os, subprocess, sys

PY = sys.executable
DFNB = [PY, '-m', 'dfnb.cli']
TOY = '''
import torch, torch.nn.functional as F
from dfnb.core import DETECTORS
from dfnb.detectors.base import Detector, create_backbone, num_features

@DETECTORS.register('toy')
class Toy(Detector):
    "A backbone and one linear unit; no feat output"
    def __init__(self, **cfg):
        super().__init__(**cfg)
        self.backbone = create_backbone(self.cfg['backbone'], self.cfg['pretrained'])
        self.head = torch.nn.Linear(num_features(self.backbone), 1)
    def forward(self, batch):
        logits = self.head(self.backbone(batch['image'])).squeeze(1)
        return dict(logits=logits, prob=torch.sigmoid(logits.float()))
    def losses(self, batch, out):
        return dict(total=F.binary_cross_entropy_with_logits(out['logits'].float(), batch['label'].float()))
'''


def test_bench_with_a_plugin_detector(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', DFNB_DATA=str(tmp_path / 'data'))
    env.pop('DFNB_PLUGINS', None)
    toy, res = tmp_path / 'toy.py', tmp_path / 'res'
    toy.write_text(TOY)
    cmd = [*DFNB, 'bench', '--preset', 'smoke', '--methods', 'bce', 'toy', '--out', str(res), '--no-robustness']
    r = subprocess.run(cmd + ['--plugin', str(toy)], capture_output=True, text=True, timeout=1500, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = (res / 'report.md').read_text()
    assert '| toy |' in rep and '| bce |' in rep
    assert 'No identity figures for toy: Toy returns no feat output' in rep
    assert (res / 'runs/toy-s0/eval/results.json').exists()
    # without the plugin the name is unknown, and with a broken one the plugin is named: one line each, no traceback
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith('dfnb: error:'), r.stderr
    assert "'toy'" in r.stderr and 'Traceback' not in r.stderr
    bad = tmp_path / 'bad.py'
    bad.write_text('import no_such_module_here\n')
    r = subprocess.run(
        [*DFNB, '--plugin', str(bad), 'bench', '--help'], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 2 and 'dfnb: error: plugin' in r.stderr and 'no_such_module_here' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
