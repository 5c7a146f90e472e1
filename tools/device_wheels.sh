#!/usr/bin/env bash
# Put in .whl/ (ignored by git) the wheels that tools/gpu_check.sh needs on a machine that has
# torch, numpy, matplotlib and pytest but cannot install anything (a lent GPU machine with
# Python 3.12): nbval and the Jupyter kernel stack, at the versions of this checkout's .venv
# (known to work together), for CPython 3.12 on manylinux x86_64. Run it here, where PyPI can
# be reached; then carry .whl with the call, and gpu_check.sh installs it (runs_local/site).
#
#   tools/device_wheels.sh [PYTHON_VERSION]     # default 3.12
set -euo pipefail
PYV=${1:-3.12}
NAMES="nbval ipykernel ipython ipython_pygments_lexers jupyter_client jupyter_core nbformat
fastjsonschema jsonschema jsonschema-specifications referencing rpds-py traitlets pyzmq tornado
comm debugpy matplotlib-inline nest-asyncio platformdirs jedi parso pexpect ptyprocess
prompt_toolkit wcwidth stack-data asttokens executing pure_eval ipywidgets widgetsnbextension
jupyterlab_widgets"
PY=${PY:-.venv/bin/python}
pins=()
for n in $NAMES; do  # the version this checkout's environment runs
  v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$n")
  pins+=("$n==$v")
done
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 manylinux_2_5_x86_64; do
  plat+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
  --implementation cp "${plat[@]}" -d .whl "${pins[@]}"
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/"
