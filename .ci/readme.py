"""Write README.md from nbs/index.ipynb without Quarto (which cannot be installed here): markdown cells as they are,
code cells as python blocks, cells marked `#| hide` left out, nbdev directives stripped."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root / 'nbs/index.ipynb').read_text())
out = []
for c in nb['cells']:
    src = ''.join(c['source'])
    if c['cell_type'] == 'markdown': out.append(src.strip())
    elif c['cell_type'] == 'code':
        lines = src.split('\n')
        if any(re.match(r'#\|\s*hide\s*$', l) for l in lines): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if code: out.append('```python\n' + code + '\n```')
text = '<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n\n' + '\n\n'.join(out) + '\n'
text = text.replace('](images/', '](nbs/images/')  # the notebook's figures, as seen from the repository root
(root / 'README.md').write_text(text)
