"""The GSM8K recipe's `gpu` code path on a machine without the hub: the offline
SmolLM2-135M-Instruct and local GSM8K files
(python tools/llm_gsm8k_offline.py DATA_DIR OUT.json [grpo_steps])."""
import sys
import time

from ntprl import llm, results

data, out = sys.argv[1], sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
cfg = llm.config("gpu", model="smollm2-135m-instruct", data_dir=data, grpo_steps=steps,
                 n_rl=steps * 8)
t0 = time.perf_counter()
res = llm.run(cfg, progress=False)
results.save(out, res, experiment="llama_gsm8k", scale="gpu", seed=0, config=res["config"],
             wall_s=time.perf_counter() - t0)
for stage in ("sft", "grpo"):
    ev = res[stage]["eval"]
    print(stage, {k: ev[k] for k in ("greedy_acc", "long_frac", "len_mean", "truncated_frac")})
