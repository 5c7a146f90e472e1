#!/usr/bin/env bash
# One short GPU session (a lent device's 10-minute call), most important result last-safe:
#   1. the GPU code path's tests (bf16 autocast, fused AdamW, the training step recorded as a
#      CUDA graph == the eager step, sampler == naive, the RL policy == the sampler's, kill -9
#      resume);
#   2. benchmarks/ntp_step.py at the paper's model size (padded loop, ntprl with its CUDA graph,
#      ntprl eager, HF GPT-2; COMPILE=1 adds torch.compile, which takes a minute to compile);
#      SKIP_BENCH=1 leaves it out;
#   3. tools/paper_headline.py at d = 50, with HEADLINE's arguments: by default the two parts
#      the stored paper run left out (STaR at temperature 1.5 and the early start), as
#      rl_post_training_rest-paper-seed0.json beside it (HEADLINE="" runs the whole preset and
#      rewrites rl_post_training-paper-seed0.json, which chapters 2 and 4 assert: more than one
#      call).
#
#   OUT=folder DEADLINE_S=540 [SKIP_BENCH=1] [COMPILE=1] [HEADLINE="..."] tools/gpu_session.sh
#
# Everything it writes goes to $OUT (summary.txt, tests.log, ntp_step.txt, headline.log and the
# headline's results file); checkpoints go to runs_local/paper-headline (ignored by git, so a
# second call on the same warm machine resumes). The whole script ends within DEADLINE_S.
# Measured on an H200 (2026-11-27): the preset's 40000 NTP steps in 267 s, then about 37 s a
# part; the default HEADLINE (NTP, then two parts) needs about 350 s of the deadline.
set -u
OUT=${OUT:-gpu_session}
DEADLINE_S=${DEADLINE_S:-540}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
start=$(date +%s)
left() { echo $((DEADLINE_S - ($(date +%s) - start))); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/summary.txt" 2>&1
timeout 120 python3 -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py \
  tests/test_rl_updates.py -k "cuda or policy_being_optimised or tempered or trainer_weights" > "$OUT/tests.log" 2>&1
echo "tests: rc=$? after $(( $(date +%s) - start )) s: $(tail -1 "$OUT/tests.log")" >> "$OUT/summary.txt"
if [ -z "${SKIP_BENCH:-}" ]; then  # SKIP_BENCH=1: straight to the headline
  timeout 150 python3 benchmarks/ntp_step.py --paper-model ${COMPILE:+--compile} \
    > "$OUT/ntp_step.txt" 2>&1
  echo "ntp_step: rc=$? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
fi
budget=$(( $(left) - 90 ))
limit=$(left); [ "$limit" -lt 1 ] && limit=1  # (timeout 0 would mean no limit at all)
HEADLINE=${HEADLINE-"--name rl_post_training_rest --parts star-e2e-T1.5 grpo-early"}
# shellcheck disable=SC2086  # HEADLINE holds several arguments, split on spaces
timeout "$limit" python3 tools/paper_headline.py --out "$OUT" --work runs_local/paper-headline \
  --budget-s "$budget" $HEADLINE > "$OUT/headline.log" 2>&1
echo "headline: rc=$? (budget ${budget}s)" >> "$OUT/summary.txt"
[ -f "$OUT/ntp_step.txt" ] && tail -25 "$OUT/ntp_step.txt"
grep -v "it/s" "$OUT/headline.log" | tail -20
cat "$OUT/summary.txt"
