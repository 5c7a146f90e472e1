#!/usr/bin/env bash
# The GPU check of the book, in one go (for a maintainer with one CUDA GPU):
#   1. every chapter at NTPRL_SCALE=gpu under nbval, all four at once (one log each);
#   2. experiments run by the CLI, saved as results files with provenance, ready to be copied to
#      lib/ntprl/runs/ as stored runs;
#   3. resume on CUDA: the kill -9 tests of NTP and GRPO on the GPU, and a CLI experiment killed
#      with SIGKILL after its first part and run again, compared with an uninterrupted run.
#
#   OUT=some/folder BUDGET_S=480 CHAPTERS="01 02 03 04" tools/gpu_check.sh linear_theory:paper threshold:gpu
#
# CHAPTERS (default: all) picks chapters by number; chapter 6 at gpu scale downloads a model
# from the Hugging Face hub, so leave it out on a machine without internet.
# Needs the book's requirements (or at least torch, nbval, ipykernel, ipywidgets and ntprl).
# Everything it writes goes to $OUT: chNN.log (pytest -v, one line per cell), EXP-SCALE.json,
# EXP-SCALE.log, and summary.txt. Each job stops after BUDGET_S seconds; a job that did not
# finish says so in summary.txt.
set -u
OUT=${OUT:-gpu_check}
BUDGET_S=${BUDGET_S:-480}
mkdir -p "$OUT"
# no progress widgets under nbval: nobody watches them here, and a long cell's thousands of
# widget messages are the likely reason nbval once gave up waiting (a fixed 5 s) for a cell's
# last output
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} NTPRL_SCALE=${NTPRL_SCALE:-gpu}
export NTPRL_PROGRESS=off
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/summary.txt" 2>&1
python3 -c "import torch, ntprl; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ntprl', ntprl.__version__)" >> "$OUT/summary.txt" 2>&1

pids=()
names=()
for nb in chapters/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb" .ipynb | cut -c1-2)
  [ -n "${CHAPTERS:-}" ] && [[ " $CHAPTERS " != *" $name "* ]] && continue
  ( /usr/bin/time -f "wall_s %e" timeout "$BUDGET_S" python3 -m pytest -p no:cacheprovider -v \
      --nbval-lax --nbval-current-env --durations=5 "$nb" ) > "$OUT/ch$name.log" 2>&1 &
  pids+=($!); names+=("ch$name")
done
for job in "$@"; do
  exp=${job%%:*}; sc=${job##*:}
  ( /usr/bin/time -f "wall_s %e" timeout "$BUDGET_S" python3 -m ntprl run "$exp" --scale "$sc" \
      --no-progress --force --out "$OUT/$exp-$sc.json" ) > "$OUT/$exp-$sc.log" 2>&1 &
  pids+=($!); names+=("$exp-$sc")
done
# 3. resume on CUDA (checkpoints saved on the GPU, loaded back after a kill -9)
( timeout "$BUDGET_S" python3 -m pytest -p no:cacheprovider -q tests/test_rl_updates.py -k kill
  NTPRL_SCALE=smoke timeout "$BUDGET_S" python3 tools/resume_check.py "$OUT/resume"
) > "$OUT/resume.log" 2>&1 &
pids+=($!); names+=("resume")
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?
  echo "${names[$i]}: rc=$rc $( [ $rc = 124 ] && echo '(stopped at the budget)')" >> "$OUT/summary.txt"
done
grep -h "wall_s\|passed\|failed" "$OUT"/*.log >> "$OUT/summary.txt" 2>/dev/null
cat "$OUT/summary.txt"
