"""ntprl.llm: GSM8K mixtures, answers, rewards, configs, and the whole SFT -> GRPO path on a tiny
random Llama (offline). Tests against the real GSM8K files run when ../shared/data/gsm8k/ exists."""

import pathlib

import pytest

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
    ("#### 12\n#### 13", "13"),
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
    assert "<<" not in gsm8k.strip_calculator(SOLUTION) and ">>" not in gsm8k.strip_calculator(SOLUTION)
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
            assert m["completion"].startswith(" ") and m["completion"].endswith(f"#### {m['answer']}")
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
    assert config("fast").model == "tiny" and config("smoke").data_dir == TINY_DATA
    assert config("gpu").needs_gpu and config("paper").model.startswith("meta-llama/")
    for name in ("smoke", "gpu", "paper"):
        assert config(name).expected
    for field, value in [("p_cot", 1.2), ("num_generations", 1), ("loss_type", "mean"),
                         ("scale_rewards", "std"), ("sft_steps", 0), ("dtype", "fp8"), ("beta", -1.0)]:
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
    """Mixture -> SFT 2 steps -> GRPO 2 steps -> evaluate, on the tiny random Llama, offline."""
    pytest.importorskip("trl")
    from ntprl.llm import run

    cfg = config("smoke")
    out = run(cfg)
    assert out["mixture_long_frac"] == round(cfg.p_cot * cfg.n_train) / cfg.n_train
    for stage in ("sft", "grpo"):
        ev = out[stage]["eval"]
        assert ev["n"] == cfg.n_test and 0 <= ev["greedy_acc"] <= 1 and 0 <= ev["long_frac"] <= 1
        assert 1 <= ev["len_mean"] <= cfg.eval_max_new_tokens and len(ev["examples"]) == cfg.examples
    assert any("loss" in r for r in out["sft"]["log"])
    assert any("reward" in r or "rewards/correctness/mean" in r for r in out["grpo"]["log"])


@pytest.mark.skipif(not GSM8K_DIR.exists(), reason="the GSM8K files (../shared/data/gsm8k) are absent")
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

    out = run(config("smoke", lora=True, lora_r=4), progress=False)
    assert out["config"]["lora"] is True and out["grpo"]["eval"]["n"] == 4
