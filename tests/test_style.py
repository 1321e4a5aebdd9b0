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


def export_kinds(nb):  # a notebook path
    "Each code cell as 'public' (an export cell defining a public name), 'export' (other export cells) or 'other'"
    kinds = []
    for _, src in code_cells(nb):
        if not re.match(r'#\|\s*export', src):
            kinds.append('other')
            continue
        body = ast.parse(python_only(src)).body
        names = [n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        names += [t.id for n in body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        kinds.append('public' if any(not n.startswith('_') for n in names) else 'export')
    return kinds


def test_export_rhythm():
    "One public definition, then its example: at least 75% of public export cells followed by a non-export code cell"
    followed = total = 0
    long_runs = []
    for nb in NOTEBOOKS:
        kinds = export_kinds(nb)
        pub = [i for i, k in enumerate(kinds) if k == 'public']
        total += len(pub)
        followed += sum(1 for i in pub if i + 1 < len(kinds) and kinds[i + 1] == 'other')
        run = 0
        for k in kinds:
            run = 0 if k == 'other' else run + 1
            if run > 4:
                long_runs.append(f'{nb.relative_to(ROOT)}')
                break
    assert not long_runs, 'more than 4 export cells in a row with no example between them:\n' + '\n'.join(long_runs)
    assert followed >= 0.75 * total, f'only {followed} of {total} public export cells are followed by an example'


def branch_points(node):  # an AST node
    "if/elif, ternaries, loops, comprehension conditions, boolean operators, except clauses and asserts under `node`"
    k = 0
    for n in ast.walk(node):
        if isinstance(n, (ast.If, ast.IfExp, ast.For, ast.While, ast.ExceptHandler, ast.Assert)):
            k += 1
        elif isinstance(n, ast.BoolOp):
            k += len(n.values) - 1
        elif isinstance(n, ast.comprehension):
            k += 1 + len(n.ifs)
    return k


def test_frame_dataset_stays_small():
    "Sample kinds are their own classes; `FrameDataset` keeps the manifest, the keyed randomness and the dispatch"
    tree = ast.parse((ROOT / 'dfnb/data.py').read_text(encoding='utf-8'))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == 'FrameDataset')
    assert branch_points(cls) < 30, f'FrameDataset has {branch_points(cls)} branch points'


def test_eval_is_the_protocol_only():
    "eval imports neither train nor prep (runs own the folder, detect the raw files, sweeps the trainings)"
    tree = ast.parse((ROOT / 'dfnb/eval.py').read_text(encoding='utf-8'))
    bad = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module in ('train', 'prep')]
    assert not bad, bad


RUN_FILE_NAMES = {'best.pt', 'last.pt', 'config.yaml', 'summary.json', 'card.md', 'decisions.json', 'identity.json',
                  'val_scores.parquet', 'results.json', 'train.csv', 'val.csv', 'checkpoints'}  # fmt: skip


def test_only_runs_names_run_files():
    "No module but `runs` builds the path of a run's file (messages may name them); pretrain's folder is not a run"
    bad = []
    for f in MODULES:
        if f.name in ('runs.py', 'pretrain.py'):
            continue
        tree = ast.parse(f.read_text(encoding='utf-8'))
        in_fstring = {id(m) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for m in ast.walk(n)}
        in_fstring |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in in_fstring:
                if n.value.split('/')[-1] in RUN_FILE_NAMES:
                    bad.append(f'{f.relative_to(ROOT)}:{n.lineno} {n.value!r}')
    assert not bad, "a run's files named outside dfnb.runs:\n" + '\n'.join(bad)
