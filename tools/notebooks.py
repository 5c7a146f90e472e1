"""Build the chapter notebooks from their text sources, and the student copies from those.

    python tools/notebooks.py build     # chapters/src/NN_name.py -> chapters/NN_name.ipynb
    python tools/notebooks.py student   # chapters/NN_name.ipynb -> chapters/student/NN_name.ipynb
    python tools/notebooks.py check     # exit 1 if any committed notebook is stale

The sources are jupytext "percent" files (``# %%`` cells), the reviewable form of a chapter.
Every ``github.com/OWNER/REPO`` (and Colab's ``.../github/OWNER/REPO``) in them is rewritten to
the repository URL of ``_config.yml``, and every ``git+...@REF#`` install and Colab
``.../blob/REF/`` link to its ``repository.branch`` (a branch, or a release tag for a course),
so both are written in one place.
The .ipynb files are what the book, nbval and Colab read; they are written without outputs and
with clean metadata. In a student copy every code cell tagged ``solution`` becomes a stub:
functions keep their signature (not their docstring, which tells the answer) and raise
``NotImplementedError``; assignments become ``name = None``. The gated solutions' prose is
dropped with their markers.
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys

import jupytext
import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC, CHAPTERS, STUDENT = ROOT / "chapters/src", ROOT / "chapters", ROOT / "chapters/student"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
REPO, REF = CONFIG["url"].rstrip("/"), CONFIG["branch"]
GITHUB = re.compile(r"(github\.com|colab\.research\.google\.com/github)"
                    r"/[\w.-]+/[\w.-]+?(?=[/@\"\s)]|\.git)")
KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}


def build_notebook(src: pathlib.Path) -> nbformat.NotebookNode:
    nb = jupytext.read(src)
    nb.metadata = dict(KERNEL)
    # the one repository URL, from _config.yml
    owner_repo = REPO.removeprefix("https://github.com/")
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        cell.metadata = {"tags": tags} if tags else {}
        cell.id = f"{src.stem[:2]}-{i:03d}"
        cell.source = GITHUB.sub(lambda m: f"{m.group(1)}/{owner_repo}", cell.source)
        cell.source = re.sub(r"(git\+https://github\.com/[\w.-]+/[\w.-]+)@[\w.-]+#",
                             rf"\1@{REF}#", cell.source)
        cell.source = re.sub(r"(colab\.research\.google\.com/github/[\w.-]+/[\w.-]+)/blob/"
                             r"[\w.-]+/", rf"\1/blob/{REF}/", cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def stub(source: str) -> str:
    tree = ast.parse(source)
    out = ["# Your turn: replace the stubs below, then run the check cell that follows."]
    lines = source.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            body0 = node.body[0]
            # the signature only: a solution's docstring tells the answer, so it is dropped
            out += lines[(node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
                         : body0.lineno - 1]
            indent = " " * (body0.col_offset)
            out.append(f'{indent}raise NotImplementedError("your code here")')
            out.append("")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.append(" = ".join(ast.unparse(t) for t in targets) + " = None  # your answer")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.unparse(node))
    return "\n".join(out).rstrip() + "\n"


# a gated-solution marker: ":::{solution-start} label" or ":::{solution-end}", its option lines
# (":class: dropdown") and its closing ":::"
GATE = re.compile(r"^:::\{solution-(?:start|end)\}[^\n]*\n(?::[^\n]*\n)*:::[ \t]*$\n?", re.M)


def _outside_gates(text: str, inside: bool) -> tuple[str, bool]:
    """The parts of a markdown ``text`` outside gated solutions, and whether its end is inside
    one (``inside``: whether its start is). Gated prose is a solution too: it is dropped."""
    kept, pos = [], 0
    for m in GATE.finditer(text):
        if not inside:
            kept.append(text[pos: m.start()])
        inside, pos = m.group(0).startswith(":::{solution-start}"), m.end()
    if not inside:
        kept.append(text[pos:])
    return "".join(kept), inside


def student_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    cells, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text, inside = _outside_gates(cell.source, inside)
            cell.source = text.strip()
            if not cell.source:
                continue
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            cell.source = stub(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "solution"] + ["stub"]
        if cell.cell_type == "markdown":  # the student copy links to itself, not to the answers
            cell.source = re.sub(r"\(the exercises without their solutions; or open \[the full "
                                 r"chapter, with solutions\]\([^)]*\)\)\n?", "", cell.source)
            cell.source = cell.source.replace(f"/chapters/{name}", f"/chapters/student/{name}")
        cells.append(cell)
    nb.cells = cells
    return nb


def targets():
    """(path, expected text) for every generated notebook."""
    out = []
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        nb = build_notebook(src)
        name = src.stem + ".ipynb"
        out.append((CHAPTERS / name, nbformat.writes(nb) + "\n"))
        out.append((STUDENT / name, nbformat.writes(student_notebook(nb, name)) + "\n"))
    return out


def main(cmd: str) -> int:
    stale = []
    for path, text in targets():
        if cmd == "check":
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        elif (cmd == "build" and path.parent == CHAPTERS
              or cmd == "student" and path.parent == STUDENT):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale notebooks (run `make notebooks`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("build", "student", "check"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
