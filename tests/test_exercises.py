"""The exercises' named checks and the grading command.

Every check must pass on the chapter's solution and fail on the stub, on a typical wrong
answer and on an answer that calls the library's own implementation; check cells must not
define a reference; the grader must tell passed / failed / not attempted apart."""

import contextlib
import csv
import json
import pathlib
import re

import pytest

from ntprl import checks, grading

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = sorted((ROOT / "chapters" / "src").glob("0*.py"))


def cells(path):
    return re.split(r"\n(?=# %%)", path.read_text())


def solutions() -> dict[str, str]:
    """label -> the source of its solution cell, from the chapters' text sources."""
    out = {}
    for path in SRC:
        label = None
        for cell in cells(path):
            found = re.findall(r":label: (ex\d+-[\w-]+)", cell)
            if found:
                label = found[-1]
            if cell.startswith('# %% tags=["solution"]') and label:
                out[label] = cell.split("\n", 1)[1]
                label = None
    return out


SOLUTIONS = solutions()

WRONG = {  # a typical mistake for each exercise
    "ex1-running-parity": "def running_parity(x):\n    return torch.cumsum(x, dim=1)",
    "ex1-sequence": "def make_sequence(x, long):\n"
                    "    c = [sum(x[:i+1]) % 2 for i in range(len(x))]\n"
                    "    return list(x) + (c if long else c[-1:])",
    "ex1-predict": "def sampled_accuracy(p):\n    return p",
    "ex2-first-token": "def short_match_share(seqs, d):\n"  # over every sequence, not the short
                       "    return (seqs[:, d] == seqs[:, 0]).float().mean().item()",
    "ex2-marker": "def greedy_goes_long_with_marker(p):\n    return p >= (1 - p) / 2",
    "ex2-temperature": "def long_prob_at(p, tau):\n    return p ** (1 / tau)",
    "ex2-probe": "def calibration_probe(model, prompts):\n    d = prompts.shape[1]\n"
                 "    x1 = prompts[:, :1]\n"
                 "    logits = model(torch.cat([prompts, x1], 1)).float()\n"
                 "    pf = torch.softmax(logits[:, d], -1).gather(1, x1).squeeze(1)\n"
                 "    pe = torch.softmax(logits[:, d], -1)[:, EOS]\n"
                 "    return pf.mean().item(), (1 - pe).mean().item()",
    "ex3-star-map": "def star_round(p):\n    return p / (1 + p)",
    "ex3-feature": "def chain_feature(d, i):\n    return (i, d + i - 1)",
    "ex3-epsilon": "def rounds_to(p, eps):\n"
                   "    return int(math.log2((1 - eps) / eps * (1 - p) / p))",
    "ex4-grpo": "def grpo_advantages(rewards, group_size):\n"
                "    g = rewards.float().view(-1, group_size)\n"
                "    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6))"
                ".reshape(-1)",
    "ex4-loss": "def pg_loss(logp, adv, mask, loss_agg, max_new_tokens):\n"
                "    m = mask.float()\n    return -(m / m.sum() * adv[:, None] * logp).sum()",
    "ex4-star": "def star_filter(tokens, rewards):\n    return tokens[rewards >= 0]",
    "ex4-star-round": "def star_round(model, opt, task, n, steps, batch, generator):\n"
                      "    prompts = task.prompts(n, generator)\n"
                      "    with torch.no_grad():\n"
                      "        tok, mask = generate(model, prompts, task.max_response_len, 1.0,\n"
                      "                             generator, eos_id=EOS, pad_id=PAD)\n"
                      "    r = task.reward_e2e(prompts, tok[:, task.prompt_len:])\n"
                      "    for _ in range(steps):  # fine-tunes on every sample: no filter\n"
                      "        i = torch.randint(0, n, (batch,), generator=generator)\n"
                      "        loss = sequence_loss(model(tok[i]), tok[i], mask[i])\n"
                      "        opt.zero_grad(); loss.backward(); opt.step()\n"
                      "    return int((r > 0).sum())",
    "ex4-ablation": "import copy\n"  # the classic: one copy shared by every arm
                    "def length_ablation(start, task, steps, seed, **settings):\n"
                    "    model, curves = copy.deepcopy(start), {}\n"
                    "    for agg in ('token_mean', 'seq_mean', 'constant'):\n"
                    "        hist = rl.train(model, task, 'grpo', steps, loss_agg=agg,\n"
                    "                        seed=seed, progress=False, **settings)\n"
                    "        curves[agg] = [r['len_mean'] for r in hist]\n"
                    "    return curves",
    "ex4-rounds": "def rounds_needed(p):\n    n = 0\n    while p < 1 / 3:\n"
                  "        p, n = 2 * p / (1 + p), n + 1\n    return n",
    "ex5-chain": "def long_chain(a, b, n):\n    out = [MARK]\n    for i in range(1, n + 1):\n"
                 "        out += [SEP] if i > 1 else []\n        s = a * (b % 10 ** i)\n"
                 "        out += [(s // 10 ** j) % 10 for j in reversed(range(2 * n))]\n"
                 "    return out",
    "ex5-threshold": "def greedy_long_share(p_cot, shares):\n"  # one m for all: the mean
                     "    m = sum(shares) / len(shares)\n    return float(p_cot > m / (1 + m))",
    "ex5-lengths": "def long_share(hist, task):\n    return hist[task.long_len] / len(hist)",
    "ex6-threshold": "def threshold_for(short_first_probs):\n"  # the parity answer, always
                     "    return 1 / 3",
    "ex6-extract": "def my_extract(text):\n    found = re.findall(r'-?\\d+', text)\n"
                   "    return found[-1] if found else None",
    "ex6-target": "def my_long_target(solution):\n    return solution",
}

DELEGATE = {  # a right answer, written by calling the library: must be refused
    "ex1-running-parity": "def running_parity(x):\n"
                          "    return ParityTask(x.shape[1], 1.0).chain_of(x)",
    "ex1-predict": "from ntprl.theory import accuracy\n"
                   "def sampled_accuracy(p):\n    return accuracy(p)",
    "ex2-marker": "def greedy_goes_long_with_marker(p):\n"
                  "    return theory.tempered([p, (1 - p) / 2, (1 - p) / 2], 0.0)[0] == 1.0",
    "ex2-temperature": "def long_prob_at(p, tau):\n    return theory.long_prob(p, tau)",
    "ex2-probe": "from ntprl.metrics import branch_probs\n"
                 "def calibration_probe(model, prompts):\n"
                 "    t = ParityTask(prompts.shape[1], 0.5)\n"
                 "    return tuple(branch_probs(model, t, len(prompts)).values())",
    "ex3-star-map": "from ntprl.theory import star_map\n"
                    "def star_round(p):\n    return star_map(p)",
    "ex4-grpo": "def grpo_advantages(rewards, group_size):\n"
                "    return rl.group_advantages(rewards, group_size, 'group_std')",
    "ex4-rounds": "def rounds_needed(p):\n    return theory.star_rounds_to_threshold(p)",
    "ex4-star-round": "def star_round(model, opt, task, n, steps, batch, generator):\n"
                      "    ro = rl.rollout(model, task, n, 1, task.max_response_len, 1.0,\n"
                      "                    task.reward_e2e, generator)\n"
                      "    return rl.star_update(model, opt, ro, star_steps=steps,\n"
                      "                          star_batch=batch, grad_clip=1.0,\n"
                      "                          generator=generator)",
    "ex4-loss": "def pg_loss(logp, adv, mask, loss_agg, max_new_tokens):\n"
                "    w = rl.token_weights(mask, loss_agg, max_new_tokens)\n"
                "    return -(w * adv[:, None] * logp).sum()",
    "ex5-chain": "def long_chain(a, b, n):\n    t = MultiplicationTask(n, 1.0)\n"
                 "    p = t.encode_prompts(torch.tensor([a]), torch.tensor([b]))\n"
                 "    return t.chain_of(p)[0].tolist()",
    "ex5-threshold": "def greedy_long_share(p_cot, shares):\n"
                     "    return sum(p_cot > theory.divergent_threshold(m) for m in shares)"
                     " / len(shares)",
    "ex6-threshold": "def threshold_for(q):\n    return theory.divergent_threshold(max(q))",
    "ex6-extract": "def my_extract(text):\n    return gsm8k.extract_answer(text)",
    "ex6-target": "def my_long_target(solution):\n    return gsm8k.long_target(solution)",
    "ex1-sequence": "def make_sequence(x, long):\n"
                    "    t = ParityTask(len(x), 1.0)\n"
                    "    chain = t.chain_of(torch.tensor([x]))[0].tolist()\n"
                    "    return list(x) + (chain if long else chain[-1:]) + [EOS]",
    "ex3-epsilon": "def rounds_to(p, eps):\n"
                   "    n = theory.star_rounds_to_threshold(p)\n"
                   "    return n + int(math.log2((1 - eps) / eps))",
}
ALIAS = {  # the library's own function under the answer's name: must be refused too
    "ex1-running-parity": "running_parity = ParityTask(4, 1.0).chain_of",
    "ex3-star-map": "star_round = theory.star_map",
    "ex4-grpo": "import functools\n"
                "grpo_advantages = functools.partial(rl.group_advantages, norm='group_std')",
    "ex4-rounds": "rounds_needed = theory.star_rounds_to_threshold",
    "ex6-extract": "my_extract = gsm8k.extract_answer",
}


def run(label, source):
    return grading.grade_answers({label: source})[0]


def test_every_exercise_of_the_book_has_a_named_check_and_a_test_case():
    assert set(SOLUTIONS) == set(checks.EXERCISES) == set(WRONG)
    for label, source in SOLUTIONS.items():
        name = checks.EXERCISES[label][0]
        assert f"def {name}(" in source, (label, name)


@pytest.mark.parametrize("label", sorted(checks.EXERCISES))
def test_named_check_passes_the_solution_and_fails_stub_wrong_and_delegating_answers(label):
    name = checks.EXERCISES[label][0]
    assert run(label, SOLUTIONS[label])["status"] == "passed", run(label, SOLUTIONS[label])
    stub = f"def {name}(*args, **kwargs):\n    raise NotImplementedError('not yet')"
    got = run(label, stub)
    assert got["status"] == "failed" and "not written yet" in got["detail"], got
    got = run(label, WRONG[label])
    assert got["status"] == "failed", got
    if label in DELEGATE:
        got = run(label, DELEGATE[label])
        assert got["status"] == "failed" and "calls ntprl's own" in got["detail"], got
    if label in ALIAS:
        got = run(label, ALIAS[label])
        assert got["status"] == "failed" and "is ntprl's own" in got["detail"], got


def test_checks_restore_the_library_after_refusing_a_delegating_answer():
    from ntprl import theory

    before = theory.star_map
    assert run("ex3-star-map", DELEGATE["ex3-star-map"])["status"] == "failed"
    assert theory.star_map is before and theory.star_map(0.5) == pytest.approx(2 / 3)
    import ntprl.llm
    from ntprl.llm import gsm8k

    assert run("ex6-extract", "def my_extract(text):\n    return ntprl.llm.extract_answer(text)"
               )["status"] == "failed"
    assert ntprl.llm.extract_answer is gsm8k.extract_answer  # the re-export is back too
    assert gsm8k.extract_answer("#### 7") == "7"


TRAINING = ("ex4-star-round", "ex4-ablation")  # compared with the library's runs: no cases


def solution_function(label):
    namespace: dict = {}
    exec(grading.PRELUDE, namespace)
    exec(SOLUTIONS[label], namespace)
    return namespace[checks.EXERCISES[label][0]]


@pytest.mark.parametrize("label", sorted(set(checks.EXERCISES) - set(TRAINING)))
def test_checks_add_hidden_cases_in_grading_mode_and_the_solution_passes_them(label, capsys):
    """Under ``hidden_cases`` a check runs more cases than the notebook's check cell shows,
    as many for any seed, and the solution passes them all."""
    check, fn = checks.EXERCISES[label][1], solution_function(label)
    counts = []
    for seed in (None, 1, 2):
        with checks.hidden_cases(seed) if seed is not None else contextlib.nullcontext():
            assert check(fn)
        counts.append(int(re.search(r"on (\d+) cases", capsys.readouterr().out).group(1)))
    assert counts[1] == counts[2] > counts[0], counts


def test_hidden_cases_depend_on_the_seed_alone_and_exist_only_in_grading_mode():
    def maker(rng):
        return rng.random()

    drawn = {}
    for seed in (1, 2, 1):
        with checks.hidden_cases(seed):
            drawn.setdefault(seed, []).append(checks._hidden(maker))
    assert drawn[1][0] == drawn[1][1] != drawn[2][0]
    assert checks._hidden(maker) == []  # outside grading mode: none
    with pytest.raises(ValueError, match="seed="):
        with checks.hidden_cases("7"):
            pass


PRINTED = {  # the fixed cases of three checks, as a notebook's check cell runs them
    "ex3-star-map": checks.STAR_MAP_CASES,
    "ex4-rounds": checks.ROUNDS_CASES,
    "ex6-extract": checks.EXTRACT_CASES,
}


@pytest.mark.parametrize("label", sorted(PRINTED))
def test_an_answer_that_memorised_the_printed_cases_passes_its_cell_but_fails_grading(
        label, tmp_path):
    name, solution = checks.EXERCISES[label][0], solution_function(label)
    table = {case: solution(case) for case in PRINTED[label]}
    # None off the table: no hidden case's answer is None, so the grade cannot pass by luck
    source = f"TABLE = {table!r}\ndef {name}(x):\n    return TABLE.get(x)\n"
    assert run(label, source)["status"] == "passed"  # the notebook's own check cell
    chapter = {"3": "03_linear_theorem", "4": "04_rl_post_training", "6": "06_llama_math"}
    nb = replace_stub(student_notebook(chapter[label[2]] + ".ipynb"), label, source)
    row = grade_nb(tmp_path, nb)[label]
    assert row["status"] == "failed" and "differs from the reference" in row["detail"], row
    seed = int(re.search(r"\[hidden_cases seed (\d+)\]$", row["detail"]).group(1))
    again = grading.grade_answers({label: source}, hidden_seed=seed)[0]  # the same failure
    assert again["detail"] == row["detail"], (again, row)


def test_check_cells_define_no_reference_and_call_the_named_check():
    for path in SRC:
        parts = cells(path)
        for i, cell in enumerate(parts):
            if not cell.startswith('# %% tags=["solution"]'):
                continue
            check = next(c for c in parts[i + 1:] if c.startswith("# %%")
                         and not c.startswith("# %% [markdown]"))
            assert "def " not in check, (path.name, check[:200])
            assert re.search(r"checks\.ex\d+_\w+\(", check), (path.name, check[:200])


def make_submission(folder, chapter, answers: dict[str, str] | None):
    """A student's copy of ``chapter`` with some answer cells replaced."""
    nb = json.loads((ROOT / "chapters" / "student" / chapter).read_text())
    labels = grading.answer_cells(nb)
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        for label, stub_src in labels.items():
            if answers and label in answers and src == stub_src:
                cell["source"] = answers[label]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / chapter).write_text(json.dumps(nb))


def test_grade_command_writes_a_csv_for_complete_empty_and_wrong_submissions(tmp_path, capsys):
    from ntprl.__main__ import main

    chapter = "04_rl_post_training.ipynb"
    labels = ["ex4-grpo", "ex4-loss", "ex4-ablation", "ex4-star", "ex4-star-round",
              "ex4-rounds"]
    make_submission(tmp_path / "subs" / "complete", chapter, {k: SOLUTIONS[k] for k in labels})
    make_submission(tmp_path / "subs" / "empty", chapter, None)
    make_submission(tmp_path / "subs" / "wrong", chapter,
                    {"ex4-grpo": WRONG["ex4-grpo"], "ex4-star": SOLUTIONS["ex4-star"],
                     "ex4-rounds": "def rounds_needed(p):\n    while True:\n        pass"})
    out = tmp_path / "grades.csv"
    assert main(["grade", str(tmp_path / "subs"), "--out", str(out), "--timeout", "45"]) == 0
    rows = list(csv.DictReader(out.open()))
    got = {(r["student"], r["exercise"]): r["status"] for r in rows}
    assert got == {**{("complete", k): "passed" for k in labels},
                   **{("empty", k): "not attempted" for k in labels},
                   ("wrong", "ex4-grpo"): "failed", ("wrong", "ex4-loss"): "not attempted",
                   ("wrong", "ex4-ablation"): "not attempted",
                   ("wrong", "ex4-star"): "passed", ("wrong", "ex4-star-round"): "not attempted",
                   ("wrong", "ex4-rounds"): "failed"}
    # the endless loop failed its own answer on the time limit, and no other (45 s: a training
    # exercise must finish within it even on a loaded 2-core machine)
    detail = {r["exercise"]: r["detail"] for r in rows if r["student"] == "wrong"}
    assert "longer than 45 s" in detail["ex4-rounds"]
    assert "longer than" not in detail["ex4-grpo"] and detail["ex4-grpo"], detail
    assert "7 passed, 2 failed, 9 not attempted" in capsys.readouterr().out


def test_grade_refuses_paths_without_notebooks(tmp_path):
    with pytest.raises(ValueError, match="no notebooks"):
        grading.grade([tmp_path], tmp_path / "g.csv")
    with pytest.raises(ValueError, match="is not allowed"):
        grading.grade([tmp_path / "nothing.txt"], tmp_path / "g.csv")


def test_star_round_check_rejects_a_round_without_eos_in_the_loss():
    source = SOLUTIONS["ex4-star-round"]
    old = "tokens, mask = tokens[keep], mask[keep]"
    assert old in source
    no_eos = source.replace(old, "tokens, mask = tokens[keep], mask[keep] & (tokens[keep] != EOS)")
    got = run("ex4-star-round", no_eos)
    assert got["status"] == "failed" and "which tokens the loss counts" in got["detail"], got
    # chapter 4's answer: rewarding short answers, a round without EOS moves the long share up
    before, after = map(float, re.search(r"from ([\d.]+) to ([\d.]+);", got["detail"]).groups())
    assert "rewarding only short" in got["detail"] and after > before, got["detail"]
    assert "EOS" not in got["detail"]  # the exercise asks which tokens: no answer in the hint


@pytest.mark.parametrize("old, new, says", [
    ("model = copy.deepcopy(start)", "model = start", "changed the weights of `start`"),
    ("seed=seed,", "seed=seed + len(curves),", "the library's run"),
])
def test_ablation_check_rejects_a_shared_start_and_a_seed_per_arm(old, new, says):
    source = SOLUTIONS["ex4-ablation"]
    assert old in source
    got = run("ex4-ablation", source.replace(old, new))
    assert got["status"] == "failed" and says in got["detail"], got


@pytest.mark.parametrize("label, wrap, says", [
    ("ex2-first-token", "def short_match_share(seqs, d):\n    return torch.tensor(_f(seqs, d))",
     "Python number"),
    ("ex1-running-parity", "def running_parity(x):\n    return _f(x).int()", "torch.int32"),
])
def test_checks_enforce_the_type_the_exercise_states(label, wrap, says):
    name = checks.EXERCISES[label][0]
    source = f"{SOLUTIONS[label]}\n_f = {name}\n{wrap}"  # the right values, the wrong type
    got = run(label, source)
    assert got["status"] == "failed" and says in got["detail"], got


def student_notebook(chapter):
    return json.loads((ROOT / "chapters" / "student" / chapter).read_text())


def replace_stub(nb, label, source, tag=True):
    """The stub cell of ``label`` in ``nb`` replaced by ``source`` (or, with ``tag=False``,
    left alone and ``source`` put in a new untagged cell below it)."""
    stub = grading.answer_cells(nb)[label]
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and "".join(cell["source"]) == stub:
            if tag:
                cell["source"] = source
            else:
                nb["cells"].insert(i + 1, {"cell_type": "code", "metadata": {},
                                           "source": source, "outputs": [],
                                           "execution_count": None})
            return nb
    raise AssertionError(label)


def grade_nb(tmp_path, nb):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return {r["exercise"]: r for r in grading.grade_notebook(path, timeout=60)}


def test_a_handed_in_full_chapter_is_copied_not_passed(tmp_path):
    """The full chapters are public: their solution cells (tagged ``solution``) handed in
    are reported as such, not graded as the student's work."""
    nb = json.loads((ROOT / "chapters" / "01_parity_and_cot.ipynb").read_text())
    got = grade_nb(tmp_path, nb)
    assert got and {r["status"] for r in got.values()} == {"copied"}, got


def test_a_commented_out_stub_line_is_an_attempt(tmp_path):
    """Only a body that is still the stub's ``raise`` is *not attempted*; the stub line left
    as a comment beside a real answer is graded."""
    nb = student_notebook("01_parity_and_cot.ipynb")
    commented = '\n    # raise NotImplementedError("your code here")\n'
    nb = replace_stub(nb, "ex1-running-parity", SOLUTIONS["ex1-running-parity"] + commented)
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "passed", got
    assert got["ex1-sequence"]["status"] == "not attempted", got


def test_the_grader_is_not_fooled_by_printed_verdicts_or_a_submitted_ntprl(tmp_path):
    """A wrong answer stays *failed* when it prints a fake verdict (at exit, after the real
    one) and when the student's folder holds a module named ``ntprl`` that would pass
    everything."""
    fake = json.dumps([{"exercise": "ex1-running-parity", "status": "passed", "detail": ""}])
    answer = ("import atexit\n_ = atexit.register(print, " + repr(fake) + ")\n"
              "print(" + repr(fake) + ")\n" + WRONG["ex1-running-parity"])
    nb = replace_stub(student_notebook("01_parity_and_cot.ipynb"), "ex1-running-parity",
                      answer)
    (tmp_path / "ntprl").mkdir()
    (tmp_path / "ntprl" / "__init__.py").write_text("")
    (tmp_path / "ntprl" / "grading.py").write_text(
        "import json\ndef grade_answers(answers, context):\n"
        "    return [{'exercise': k, 'status': 'passed', 'detail': ''} for k in answers]\n")
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "failed", got


def test_an_answer_may_import_the_students_own_module_beside_the_notebook(tmp_path):
    (tmp_path / "myhelpers.py").write_text(
        "import torch\n\ndef cumparity(x):\n    return torch.cumsum(x, dim=1) % 2\n")
    nb = replace_stub(student_notebook("01_parity_and_cot.ipynb"), "ex1-running-parity",
                      "from myhelpers import cumparity\n\n"
                      "def running_parity(x):\n    return cumparity(x)\n")
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "passed", got


def test_students_in_nested_folders_are_told_apart(tmp_path):
    for who in ("alice", "bob"):
        (tmp_path / who / "hw4").mkdir(parents=True)
        (tmp_path / who / "hw4" / "x.ipynb").write_text("{}")
    (tmp_path / "carol.ipynb").write_text("{}")
    found = grading.find_notebooks([tmp_path])
    assert sorted(s for s, _ in found) == ["alice", "bob", "carol"], found


def test_grader_runs_an_answer_after_the_definitions_above_it(tmp_path):
    """What works in the notebook passes: an answer that calls an earlier exercise's function,
    that uses the setup cell's imports (ntprl, checks), or that keeps a test line."""
    nb = student_notebook("01_parity_and_cot.ipynb")
    nb = replace_stub(nb, "ex1-running-parity", SOLUTIONS["ex1-running-parity"] +
                      "\nprint(running_parity(task.prompts(3)))  # a test line: skipped\n")
    nb = replace_stub(nb, "ex1-sequence", "def make_sequence(x, long):\n"
                      "    chain = running_parity(torch.tensor([x]))[0].tolist()\n"
                      "    assert ntprl.tasks.EOS == EOS and checks\n"
                      "    return list(x) + (chain if long else chain[-1:]) + [EOS]\n")
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "passed", got
    assert got["ex1-sequence"]["status"] == "passed", got
    assert got["ex1-predict"]["status"] == "not attempted", got


def test_grader_finds_an_answer_outside_its_stub_and_a_row_for_every_exercise(tmp_path):
    nb = student_notebook("01_parity_and_cot.ipynb")
    # written in a new cell below the untouched stub: the last definition wins, as in Jupyter
    nb = replace_stub(nb, "ex1-running-parity", SOLUTIONS["ex1-running-parity"], tag=False)
    stub = grading.answer_cells(nb)["ex1-predict"]  # the stub deleted, no answer anywhere
    nb["cells"] = [c for c in nb["cells"] if "".join(c["source"]) != stub]
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "passed", got
    assert got["ex1-predict"] == {"exercise": "ex1-predict", "status": "not attempted",
                                  "detail": "no code cell defines sampled_accuracy"}, got
    assert set(got) == {label for label in checks.EXERCISES if label.startswith("ex1-")}


def test_grader_gives_a_notebook_without_exercises_one_row(tmp_path):
    got = grade_nb(tmp_path, {"cells": [{"cell_type": "code", "metadata": {},
                                         "source": "x = 1", "outputs": []}]})
    assert list(got) == ["*"] and got["*"]["status"] == "not attempted", got
    assert "no exercise labels" in got["*"]["detail"]


def test_grader_reports_a_syntax_error_in_the_answer_and_skips_one_above_it(tmp_path):
    nb = student_notebook("01_parity_and_cot.ipynb")
    nb = replace_stub(nb, "ex1-running-parity", "def running_parity(x):\n    return (\n")
    nb = replace_stub(nb, "ex1-sequence", SOLUTIONS["ex1-sequence"])
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "failed", got
    assert "SyntaxError" in got["ex1-running-parity"]["detail"], got
    assert got["ex1-sequence"]["status"] == "passed", got


@pytest.mark.parametrize("chapter", sorted(p.name for p in (ROOT / "chapters" / "student")
                                           .glob("0*.ipynb")))
def test_every_answer_sees_its_chapters_setup_imports(chapter):
    """The setup cell (with its `%pip` line) parses, so its imports reach every answer."""
    answers = grading.notebook_answers(student_notebook(chapter))
    assert answers
    for label, a in answers.items():
        assert "from ntprl import checks" in a["context"], (label, a["context"][:300])


@pytest.mark.parametrize("label, source", [
    ("ex6-extract", "def my_extract(text):\n    return ntprl.llm.extract_answer(text)"),
    ("ex6-target", "def my_long_target(solution):\n"
                   "    reasoning, answer = solution.rsplit('####', 1)\n"
                   "    return ntprl.llm.strip_calculator(reasoning).rstrip() + "
                   "'\\n#### ' + answer.strip()"),
    ("ex1-predict", "def sampled_accuracy(p):\n    return theory.first_token_prob(p)"),
    ("ex3-star-map", "def star_round(p):\n    return theory.continue_prob(p)"),
    ("ex4-rounds", "def rounds_needed(p):\n"
                   "    return math.floor(theory.log_odds_rounds(p)) + 1"),
])
def test_checks_refuse_the_library_under_another_name(label, source):
    """A re-export (``ntprl.llm.extract_answer``) or a library function that computes the
    same formula is refused like the function itself."""
    got = run(label, source)
    assert got["status"] == "failed" and "calls ntprl's own" in got["detail"], got


@pytest.mark.parametrize("chapter", ["01_parity_and_cot.ipynb", "05_multiplication.ipynb"])
def test_grading_a_full_chapter_passes_every_exercise(chapter):
    """The answer key graded as a submission: every solution cell passes, seen as the grader
    sees it (after the chapter's setup cell and the cells above it)."""
    rows = grading.grade_notebook(ROOT / "chapters" / chapter, timeout=120, answer_key=True)
    assert rows and all(r["status"] == "passed" for r in rows), rows
    assert {r["exercise"] for r in rows} == {
        label for label in checks.EXERCISES if label.startswith(f"ex{chapter[1]}-")}


def test_grader_keeps_python_lines_that_start_with_percent_and_decorators_above(tmp_path):
    """A modulo on its own line inside brackets is Python, not a magic; a decorated helper
    above the answer keeps its decorator; an attribute set on the function does not make its
    cell the answer."""
    nb = student_notebook("01_parity_and_cot.ipynb")
    helper = ("import functools\n\n@functools.lru_cache(maxsize=None)\ndef one():\n"
              "    return 1\n")
    nb["cells"].insert(2, {"cell_type": "code", "metadata": {}, "source": helper,
                           "outputs": [], "execution_count": None})
    nb = replace_stub(nb, "ex1-running-parity", "def running_parity(x):\n"
                      "    assert one.cache_info() is not None  # the decorator is there\n"
                      "    return (x.cumsum(1)\n            % 2)\n", tag=False)
    nb = replace_stub(nb, "ex1-sequence", "def make_sequence(x, long):\n"
                      "    chain = [sum(x[: i + 1]) % 2 for i in range(len(x))]\n"
                      "    return list(x) + (chain if long else chain[-1:]) + [EOS]\n")
    at = next(i for i, c in enumerate(nb["cells"]) if "def make_sequence" in
              "".join(c["source"]))
    nb["cells"].insert(at + 1, {"cell_type": "code", "metadata": {},
                                "source": "make_sequence.__doc__ = 'mine'", "outputs": [],
                                "execution_count": None})
    got = grade_nb(tmp_path, nb)
    assert got["ex1-running-parity"]["status"] == "passed", got
    assert got["ex1-sequence"]["status"] == "passed", got


def test_grader_runs_no_experiment_of_the_cells_above(tmp_path):
    """Above an answer, the student's constants run (``HALF = 0.5``), and nothing that
    computes: a call, or an assignment of one."""
    nb = student_notebook("01_parity_and_cot.ipynb")
    marker = tmp_path / "ran"
    nb["cells"].insert(2, {"cell_type": "code", "metadata": {}, "outputs": [],
                           "source": f"open({str(marker)!r}, 'w').close()\nimport time\n"
                                     "HALF, (ONE, _) = 0.5, (1, -2)\n"
                                     "SLOW = time.sleep(999)\ntime.sleep(999)",
                           "execution_count": None})
    nb = replace_stub(nb, "ex1-predict", "def sampled_accuracy(p):\n"
                                         "    return (ONE + p) * HALF")
    got = grade_nb(tmp_path, nb)
    assert got["ex1-predict"]["status"] == "passed", got
    assert not marker.exists()


def test_grader_runs_no_experiment_below_the_answers_definition(tmp_path):
    """In the answer cell, a helper above the function runs; below it only definitions do:
    a test of the function assigned to a name, or a training run, is skipped."""
    nb = student_notebook("01_parity_and_cot.ipynb")
    marker = tmp_path / "ran"
    nb = replace_stub(nb, "ex1-predict",
                      "import time\nSCALE = float(sum([0.25, 0.25]))  # a helper: runs\n"
                      "def sampled_accuracy(p):\n    return (1 + p) * SCALE * TWO / 2\n"
                      "TWO = 2\n"
                      f"ran = open({str(marker)!r}, 'w').close()\n"
                      "acc = sampled_accuracy(0.3)\nslow = time.sleep(999)\n")
    got = grade_nb(tmp_path, nb)
    assert got["ex1-predict"]["status"] == "passed", got
    assert not marker.exists()


@pytest.mark.parametrize("content", ["[]", '{"cells": null}', '{"cells": [null]}',
                                     '{"cells": [{"cell_type": "code", "source": null}]}'])
def test_grader_fails_a_file_that_is_json_but_not_a_notebook_without_crashing(tmp_path,
                                                                               content):
    path = tmp_path / "odd.ipynb"
    path.write_text(content)
    rows = grading.grade_notebook(path)
    assert len(rows) == 1 and rows[0]["exercise"] == "*", rows
