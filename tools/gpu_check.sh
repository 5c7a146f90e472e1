#!/usr/bin/env bash
# The GPU check of the book, in one go (for a maintainer with one CUDA GPU):
#   1. chapters at NTPRL_SCALE=gpu under nbval, all at once (one log each);
#   2. experiments run by the CLI, saved as results files with provenance, ready to be copied to
#      lib/ntprl/runs/ as stored runs;
#   3. resume on CUDA: the kill -9 tests of NTP and GRPO on the GPU, and a CLI experiment killed
#      with SIGKILL after its first part and run again, compared with an uninterrupted run.
#
#   OUT=some/folder BUDGET_S=480 CHAPTERS="01 02 03 04" tools/gpu_check.sh linear_theory:paper threshold:gpu
#
# CHAPTERS (default: 01 to 05) picks chapters by number; chapter 6 at gpu scale downloads a
# model from the Hugging Face hub, so it is left out unless named (on a machine with internet).
# Needs torch and the book's requirements; ntprl is taken from ./lib. On a machine that cannot
# install packages (a lent device), `tools/device_wheels.sh` here first puts what the chapters
# need beside torch (nbval, ipykernel, ipywidgets...) in .whl/, which this script installs into
# runs_local/site (ignored by git) when it finds it.
# Few files come back to $OUT: summary.txt, logs.tgz (chNN.log: pytest -v, one line per cell;
# EXP-SCALE.log; resume.log) and the results files of the experiments that finished
# (EXP-SCALE.json). Work folders and checkpoints stay in runs_local/gpu_check (ignored by git):
# a job stopped at BUDGET_S resumes there when the script is called again on the same machine.
set -u
OUT=${OUT:-gpu_check}
BUDGET_S=${BUDGET_S:-480}
WORK=runs_local/gpu_check
mkdir -p "$OUT" "$WORK/logs"
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target runs_local/site .whl/*.whl || exit 1
  export PYTHONPATH="$PWD/runs_local/site"
fi
# no progress widgets under nbval: nobody watches them here, and a long cell's thousands of
# widget messages are the likely reason nbval once gave up waiting (a fixed 5 s) for a cell's
# last output
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} NTPRL_SCALE=${NTPRL_SCALE:-gpu} NTPRL_PROGRESS=off
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/summary.txt" 2>&1
python3 -c "import torch, ntprl; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ntprl', ntprl.__version__)" >> "$OUT/summary.txt" 2>&1
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >> "$OUT/summary.txt"

timed() {  # timed LOG CMD...: run CMD within BUDGET_S, its output and wall time into LOG
  local log=$1 t0=$SECONDS; shift
  timeout "$BUDGET_S" "$@" > "$log" 2>&1; local rc=$?
  echo "wall_s $((SECONDS - t0))" >> "$log"; return $rc
}
pids=()
names=()
for nb in chapters/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb" .ipynb | cut -c1-2)
  [[ " ${CHAPTERS:-01 02 03 04 05} " != *" $name "* ]] && continue
  timed "$WORK/logs/ch$name.log" python3 -m pytest -p no:cacheprovider -v --nbval-lax \
    --nbval-current-env --durations=5 "$nb" &
  pids+=($!); names+=("ch$name")
done
for job in "$@"; do
  exp=${job%%:*}; sc=${job##*:}
  timed "$WORK/logs/$exp-$sc.log" python3 -m ntprl run "$exp" --scale "$sc" --no-progress \
    --out "$WORK/$exp-$sc.json" &
  pids+=($!); names+=("$exp-$sc")
done
# 3. resume on CUDA (checkpoints saved on the GPU, loaded back after a kill -9)
( timeout "$BUDGET_S" python3 -m pytest -p no:cacheprovider -q tests/test_rl_updates.py \
    -k "kill and cuda"
  NTPRL_SCALE=smoke timeout "$BUDGET_S" python3 tools/resume_check.py "$WORK/resume"
) > "$WORK/logs/resume.log" 2>&1 &
pids+=($!); names+=("resume")
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?
  echo "${names[$i]}: rc=$rc $( [ $rc = 124 ] && echo '(stopped at the budget)')" >> "$OUT/summary.txt"
done
for job in "$@"; do  # the finished results files come back; unfinished work stays in $WORK
  exp=${job%%:*}; sc=${job##*:}
  [ -f "$WORK/$exp-$sc.json" ] && cp "$WORK/$exp-$sc.json" "$OUT/"
done
grep -H "wall_s\|passed\|failed" "$WORK"/logs/*.log >> "$OUT/summary.txt" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$WORK" logs
cat "$OUT/summary.txt"
