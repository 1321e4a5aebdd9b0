"""The code's shape, checked on the notebooks and on what they export: lines of at most 120 characters, one statement
per line, one definition per export cell, and a reason beside every lazy import of a dfnb module."""

import ast, io, json, re, tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 120
MODULES = sorted(p for p in (ROOT / 'dfnb').rglob('*.py') if p.name != '_modidx.py')
NOTEBOOKS = sorted((ROOT / 'nbs').rglob('*.ipynb'))


def code_cells(nb):  # a notebook path
    "(cell id, source) of every code cell"
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return [(c.get('id'), ''.join(c['source'])) for c in cells if c['cell_type'] == 'code']


def generated(lines):  # a module's lines
    "Line numbers nbdev writes itself: the module docstring (the notebook's description) and `__all__`"
    out, inside = {1}, False
    for i, l in enumerate(lines, 1):
        inside = inside or l.startswith('__all__')
        if inside:
            out.add(i)
            inside = not l.rstrip().endswith(']')
    return out


def semicolons(src):  # Python source
    "Line numbers where `;` separates statements (not inside strings or comments)"
    return [
        t.start[0]
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type == tokenize.OP and t.string == ';'
    ]


def python_only(src):  # a cell's source
    "The cell without IPython's `!shell` and `%magic` lines, which are not Python"
    return '\n'.join('' if re.match(r'\s*[!%]', l) else l for l in src.split('\n'))


def test_module_lines():
    bad = []
    for f in MODULES:
        lines = f.read_text(encoding='utf-8').split('\n')
        skip = generated(lines)
        bad += [
            f'{f.relative_to(ROOT)}:{i} ({len(l)})' for i, l in enumerate(lines, 1) if len(l) > WIDTH and i not in skip
        ]
        bad += [f'{f.relative_to(ROOT)}:{i} (;)' for i in semicolons(f.read_text(encoding='utf-8'))]
    assert not bad, 'lines over 120 characters or with two statements:\n' + '\n'.join(bad)


def test_notebook_lines():
    bad = []
    for nb in NOTEBOOKS:
        for cid, src in code_cells(nb):
            bad += [f'{nb.relative_to(ROOT)} cell {cid} ({len(l)})' for l in src.split('\n') if len(l) > WIDTH]
            bad += [f'{nb.relative_to(ROOT)} cell {cid} (;)' for _ in semicolons(python_only(src))]
    assert not bad, 'notebook lines over 120 characters or with two statements:\n' + '\n'.join(bad)


def test_test_lines():
    bad = []
    for f in sorted((ROOT / 'tests').glob('*.py')):
        src = f.read_text(encoding='utf-8')
        bad += [f'{f.name}:{i}' for i, l in enumerate(src.split('\n'), 1) if len(l) > WIDTH]
        bad += [f'{f.name}:{i} (;)' for i in semicolons(src)]
    assert not bad, '\n'.join(bad)


def test_one_definition_per_export_cell():
    bad = []
    for nb in NOTEBOOKS:
        for cid, src in code_cells(nb):
            if not re.match(r'#\|\s*export', src):
                continue
            defs = [
                n.name
                for n in ast.parse(src).body
                if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and not n.name.startswith('_')
            ]  # private helpers may share their public caller's cell
            if len(defs) > 1:
                bad.append(f'{nb.relative_to(ROOT)} cell {cid}: {defs}')
    assert not bad, 'export cells with more than one definition:\n' + '\n'.join(bad)


def test_lazy_dfnb_imports_say_why():
    bad = []
    for f in MODULES:
        lines = f.read_text(encoding='utf-8').split('\n')
        for n in ast.walk(ast.parse('\n'.join(lines))):
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for m in ast.walk(n):
                dfnb = (isinstance(m, ast.ImportFrom) and (m.level or (m.module or '').split('.')[0] == 'dfnb')) or (
                    isinstance(m, ast.Import) and any(a.name.split('.')[0] == 'dfnb' for a in m.names)
                )
                if not dfnb:
                    continue
                said = '#' in ''.join(lines[m.lineno - 1 : m.end_lineno]) or lines[m.lineno - 2].strip().startswith('#')
                if not said:
                    bad.append(f'{f.relative_to(ROOT)}:{m.lineno}')
    assert not bad, 'lazy imports of a dfnb module without a reason beside them:\n' + '\n'.join(sorted(set(bad)))


def test_no_private_name_crosses_modules():
    bad = []
    for f in MODULES:
        own = 'dfnb.' + '.'.join(f.relative_to(ROOT / 'dfnb').with_suffix('').parts)
        for n in ast.walk(ast.parse(f.read_text(encoding='utf-8'))):
            if not isinstance(n, ast.ImportFrom) or n.module == own:  # a module may name its own private functions
                continue
            if n.level or (n.module or '').startswith('dfnb'):
                bad += [f'{f.relative_to(ROOT)}:{n.lineno} {a.name}' for a in n.names if a.name.startswith('_')]
    bad = [b for b in bad if not b.endswith(' __version__')]
    assert not bad, 'private names imported from another dfnb module:\n' + '\n'.join(bad)
