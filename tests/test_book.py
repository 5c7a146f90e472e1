"""The book's hygiene: table of contents, launch links, notebook conventions, student copies."""

import inspect
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
OWNER_REPO = REPO_URL.removeprefix("https://github.com/")
REF = CONFIG["repository"]["branch"]  # what the install lines and Colab links point at
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def toc_files():
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def load(path):
    return json.loads(path.read_text())


def test_repository_config():
    assert REPO_URL.startswith("https://github.com/") and OWNER_REPO.count("/") == 1
    assert re.fullmatch(r"[\w.-]+", REF), f"repository.branch={REF!r}: a branch or tag name"
    assert CONFIG["repository"]["path_to_book"] == "."
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True


@pytest.mark.parametrize("entry", toc_files())
def test_toc_entry_exists(entry):
    assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


def test_every_chapter_is_in_the_toc():
    assert {f"chapters/{p.stem}" for p in CHAPTERS} <= set(toc_files())
    assert CHAPTERS, "no chapters found"


def test_course_colab_links_open_the_configured_ref():
    page = (ROOT / "book" / "course.md").read_text()
    refs = re.findall(rf"colab\.research\.google\.com/github/{OWNER_REPO}/blob/([\w.-]+)/", page)
    assert refs and set(refs) == {REF}, refs


def test_every_github_link_uses_the_one_repository_url():
    texts = [p for p in ROOT.glob("book/**/*.md")] + [ROOT / "README.md"] + CHAPTERS
    for p in texts:
        for owner_repo in re.findall(r"github\.com/([\w.-]+/[\w.-]+?)(?:/|@|\.git|\)|\s|\"|$)",
                                     p.read_text()):
            assert owner_repo == OWNER_REPO, f"{p.name} links to github.com/{owner_repo}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_conventions(path):
    nb = load(path)
    cells = nb["cells"]
    first, setup = cells[0], cells[1]
    head = "".join(first["source"])
    colab = f"https://colab.research.google.com/github/{OWNER_REPO}/blob/{REF}/chapters/"
    assert first["cell_type"] == "markdown" and head.startswith("# ")
    # the badge opens the student copy; a second link the full chapter, with solutions
    assert f"colab-badge.svg)]({colab}student/{path.name})" in head, "badge: the student copy"
    assert f"with solutions]({colab}{path.name})" in head, "a link to the full chapter"
    assert "Learning goals" in head and "Compute" in head
    src = "".join(setup["source"])
    # its code folded, its output shown: the scale, device, date and commit of the page's run
    assert setup["cell_type"] == "code" and "hide-input" in setup["metadata"].get("tags", [])
    assert f"git+{REPO_URL}@{REF}#subdirectory=lib" in src and "google.colab" in src
    assert "pip install" in src and not re.search(r"pip install[^\n]*\btorch\b", src)
    assert "ntprl.scale.setup(" in src
    # Colab: a form field picks the scale; without the library the cell says what to install
    assert 'SCALE = "auto"  # @param ["auto", "smoke", "fast", "gpu", "paper"]' in src
    assert 'setup(None if SCALE == "auto" else SCALE' in src
    assert "except ModuleNotFoundError" in src and "pip install -e ./lib" in src
    # chapters that run resumable experiments pass the form's WORKDIR to every one of them
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    if "from ntprl.experiments import" in src and "06_" not in path.name:
        assert 'WORKDIR = ""  # @param {type:"string"}' in src
        calls = re.findall(r"\b(?:parity_hardness|threshold|more_data|linear_theory|"
                           r"rl_post_training|rounds_vs_p|leap2|mult_\w+)\(scale, [^)]*\)", code)
        assert calls and all("workdir=workdir" in c for c in calls), calls
    if "06_" in path.name:  # chapter 6 keeps its finished SFT and GRPO stages there
        assert 'WORKDIR = ""  # @param {type:"string"}' in src
        calls = re.findall(r"\bllm\.(?:sft|grpo)\([^)]*\)", code)
        assert len(calls) == 2 and all("workdir=workdir" in c for c in calls), calls
    # committed without outputs, with clean metadata
    for c in cells:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None
        assert set(c["metadata"]) <= {"tags"}
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}
    # exercises with gated solutions and self-checks
    md = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    n_ex = md.count(":::{exercise}")
    assert n_ex >= 2 and md.count(":::{solution-start}") == n_ex == md.count(":::{solution-end}")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert len(set(re.findall(r"checks\.(ex\d+_\w+)\(", code))) >= n_ex  # one named check each


# The rendered book cuts a code line off at about this many characters.
PAGE_WIDTH = 88
HIDDEN_INPUT = {"hide-input", "remove-input", "remove-cell"}
# Visible lines that cannot be wrapped to the page. Chapter 6's `%pip install` of the library
# with its extra: a magic line can go on after a `\`, but the quoted spec is one shell word of
# 83 characters, past the page on a line of its own once indented under the `if`.
UNWRAPPABLE: set[str] = set()  # lines that cannot be wrapped (none today)
SOURCES = sorted((ROOT / "chapters/src").glob("[0-9][0-9]_*.py"))


def visible_code_lines(src):
    """(line number, line) of each line of a code cell that the book shows (not tagged
    hide-input, remove-input or remove-cell) in a jupytext percent source."""
    visible = False
    for number, line in enumerate(src.read_text().splitlines(), 1):
        header = re.match(r"# %%(?!%)(.*)$", line)
        if header:
            options = header.group(1)
            tags = re.search(r"tags=(\[[^\]]*\])", options)
            visible = not re.match(r"\s*\[", options) and not (
                HIDDEN_INPUT & set(json.loads(tags.group(1)) if tags else ()))
        elif visible:
            yield number, line


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_visible_code_fits_the_page(src):
    """Every line of a visible code cell is at most PAGE_WIDTH characters: wrap it, or tag a
    cell that is only plotting or reporting hide-input."""
    long = [f"{src.name}:{number} ({len(line)} chars): {line.strip()}"
            for number, line in visible_code_lines(src)
            if len(line) > PAGE_WIDTH and line.strip() not in UNWRAPPABLE]
    assert not long, "\n".join([f"{len(long)} visible code lines wider than {PAGE_WIDTH}:"]
                                + long)


def test_library_source_a_chapter_shows_fits_the_page():
    """A library function a chapter shows whole (``Code(inspect.getsource(rl.policy_loss))``)
    is output, not a code cell: its lines must fit PAGE_WIDTH as well."""
    import importlib
    shown = []
    for src in SOURCES:
        text = src.read_text()
        for name in re.findall(r"Code\(inspect\.getsource\(([\w.]+)\)", text):
            alias, attr = name.split(".")
            module = re.search(rf"^from (ntprl[\w.]*) import .*\b{alias}\b", text, re.M)
            shown.append((src.name, name, getattr(importlib.import_module(
                f"{module.group(1)}.{alias}"), attr)))
    assert shown  # chapter 4 shows the policy loss
    for chapter, name, fn in shown:
        long = [line for line in inspect.getsource(fn).splitlines() if len(line) > PAGE_WIDTH]
        assert not long, (chapter, name, long)


def test_notebooks_are_fresh_from_their_sources():
    out = subprocess.run([sys.executable, str(ROOT / "tools/notebooks.py"), "check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_student_copy_has_stubs_not_solutions(path):
    student = load(ROOT / "chapters/student" / path.name)
    full = load(path)
    sol = [c for c in full["cells"] if "solution" in c["metadata"].get("tags", [])]
    stubs = [c for c in student["cells"] if "stub" in c["metadata"].get("tags", [])]
    assert len(sol) == len(stubs) > 0
    for st in stubs:
        body = "".join(st["source"])
        assert "NotImplementedError" in body or "= None  # your answer" in body
        namespace = {}
        exec(compile(body, "stub", "exec"), namespace)  # stubs are valid Python
    text = json.dumps(student)
    assert "solution-start" not in text and f"chapters/student/{path.name}" in text


def test_no_machine_paths_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split()
    pattern = re.compile("/" + "(work|root|home|Users)" + "/[A-Za-z]")
    for f in files:
        p = ROOT / f
        if (p.suffix in {".py", ".md", ".yml", ".ipynb", ".txt", ".toml", ".cfg", ".ini", ""}
                and p.is_file()):
            assert not pattern.search(p.read_text(errors="ignore")), f


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_student_copy_leaks_no_line_of_a_solution(path):
    """No line of a solution — its code, its docstring, the gated prose under it — appears in
    the student copy."""
    full, student = load(path), load(ROOT / "chapters/student" / path.name)
    student_text = "\n".join("".join(c["source"]) for c in student["cells"])
    solution_lines, inside = [], False
    for cell in full["cells"]:
        src = "".join(cell["source"])
        if "solution" in cell["metadata"].get("tags", []):
            body = src.split("\n")
            solution_lines += [ln for ln in body
                               if not ln.lstrip().startswith(("def ", "import ", "from "))]
        elif cell["cell_type"] == "markdown":
            for line in src.split("\n"):
                if line.startswith(":::{solution-start}"):
                    inside = True
                elif line.startswith(":::{solution-end}"):
                    inside = False
                elif inside and not line.startswith(":"):
                    solution_lines.append(line)
    leaked = [ln for ln in solution_lines if len(ln.strip()) > 12 and ln.strip() in student_text]
    assert not leaked, leaked[:3]


def test_every_stored_run_is_listed_in_the_reproducibility_appendix():
    page = (ROOT / "book" / "reproducibility.md").read_text()
    for path in sorted((ROOT / "lib" / "ntprl" / "runs").glob("*.json")):
        stem = path.name
        short = re.sub(r"-seed\d+\.json$", "", stem)
        assert stem in page or f"`{short}-seed" in page, f"{stem} is not in book/reproducibility.md"


def test_every_stored_run_a_chapter_reads_is_shipped():
    """A chapter shows and asserts a stored run only when the package holds it (``if stored is
    None: print(...)``): a renamed or lost file would silently skip its checks. Every name a
    chapter asks for must resolve."""
    from ntprl import results

    asked = set()
    for src in sorted((ROOT / "chapters" / "src").glob("*.py")):
        for fn, name, scale in re.findall(r'results\.(stored_runs|stored)\("(\w+)"'
                                          r'(?:, "(\w+)")?\)', src.read_text()):
            asked.add((src.name, fn, name, scale or None))
    assert len(asked) >= 15, asked
    for chapter, fn, name, scale in sorted(asked, key=str):
        found = results.stored(name, scale) if fn == "stored" else results.stored_runs(name)
        assert found, f"{chapter} reads {fn}({name!r}, {scale!r}): no such stored run"


@pytest.mark.parametrize("chapter", sorted((ROOT / "chapters" / "src").glob("0*.py")),
                         ids=lambda p: p.stem)
def test_setup_cell_without_anything_installed_says_what_to_install(chapter):
    """Outside Colab with neither ntprl nor its requirements importable, the first cell stops
    with the install command, not with a bare error about torch or matplotlib."""
    from IPython.core.inputtransformer2 import TransformerManager

    src = chapter.read_text()
    start = src.index('# %% tags=["hide-input"]')
    cell = src[start:src.index("# %%", start + 5)]
    code = TransformerManager().transform_cell(cell.split("\nscale = ")[0])
    blocked = ("ntprl", "torch", "numpy", "matplotlib")
    prog = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"exec(compile({code!r}, 'setup', 'exec'), {{'get_ipython': None}})\n")
    done = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "needs the book's library" in last and "pip install -e ./lib" in last, last
