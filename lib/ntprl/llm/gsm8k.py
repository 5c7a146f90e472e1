"""GSM8K as a mixture of long and short solutions: loading, the mixture, the prompt, answers.

GSM8K (Cobbe et al. 2021) has grade-school word problems whose reference solutions reason in a
few lines, with calculator notes ``<<48/2=24>>`` inline, and end in ``#### 72``. The paper's LLM
experiment trains on a *mixture*: with probability ``p_cot`` the target is the solution (our
"long" answer: the reasoning, calculator notes removed, ending in ``#### N``), otherwise the
bare answer ``#### N`` ("short"). This module builds that mixture and reads answers back.

Nothing here needs torch or the Hugging Face libraries except :func:`load_gsm8k` without a local
path, which calls ``datasets.load_dataset("openai/gsm8k", "main")``.
"""

from __future__ import annotations

import json
import pathlib
import random
import re

FIELDS = ("question", "answer")
ANSWER_MARK = "####"
TRAIN_SIZE = 7473  # problems in GSM8K's train split (its test split has 1319)
PROMPT_TEMPLATE = "Question: {question}\nAnswer:"
"""The plain prompt for base models. The target follows after one space; a long target is the
solution's reasoning then ``#### N``, a short one is ``#### N`` alone."""

_CALC = re.compile(r"<<[^<>]*>>")
# a number: optional sign (only when not right after a digit or letter, so "20-2" and "20 - 2"
# hold 20 and 2), optional "$", digits with thousands commas ("1,234"; "85, 86" is two numbers),
# optional decimals; or ".5"
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\$\s?)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
STOP_STRINGS = ("Question:", "\nQ:", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "</s>")
"""Where a completion stops being an answer: base and SFT models ramble on into a new question or
chat turn. :func:`cut_response` cuts there; evaluation and rewards read only what comes before."""
_MARKED = re.compile(r"####\s*([^\n]*)")


# ---- loading ------------------------------------------------------------------------------------
def load_gsm8k(split: str = "train", path: str | pathlib.Path | None = None,
               limit: int | None = None) -> list[dict]:
    """GSM8K problems as a list of ``{"question", "answer"}`` dicts.

    Args:
        split: ``"train"`` or ``"test"``.
        path: a folder holding ``{split}.jsonl``, or one ``.jsonl`` file, in GSM8K's format (one
            JSON object per line with ``question`` and ``answer``). ``None``: download
            ``openai/gsm8k`` (config ``main``) with ``datasets``.
        limit: keep only the first ``limit`` problems.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not allowed: use 'train' or 'test'")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r} is not allowed: use a positive integer or None")
    if path is None:
        import datasets  # only needed for the download

        rows = [dict(r) for r in datasets.load_dataset("openai/gsm8k", "main", split=split)]
    else:
        path = pathlib.Path(path)
        file = path / f"{split}.jsonl" if path.is_dir() else path
        if not file.exists():
            raise ValueError(f"path={str(path)!r} is not allowed: {file} does not exist")
        with open(file, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[:limit] if limit else rows
    for i, row in enumerate(rows):
        missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"dataset row {i} lacks the field(s) {missing}: GSM8K rows need "
                             f"string fields {FIELDS}")
    return rows


# ---- answers ------------------------------------------------------------------------------------
def normalize_number(text: str) -> str | None:
    """A number as a canonical string: ``"$1,234.50"`` -> ``"1234.5"``, ``"-3.0"`` -> ``"-3"``.
    ``None`` when ``text`` holds no number."""
    m = _NUMBER.search(text)
    if m is None:
        return None
    s = m.group(0).replace("$", "").replace(",", "").replace(" ", "")
    if s.startswith("-."):
        s = "-0" + s[1:]
    elif s.startswith("."):
        s = "0" + s
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def cut_response(text: str) -> str:
    """``text`` up to the first of :data:`STOP_STRINGS` (a new ``Question:``, a chat turn)."""
    cut = min((i for i in (text.find(stop) for stop in STOP_STRINGS) if i >= 0), default=len(text))
    return text[:cut]


def extract_answer(text: str) -> str | None:
    """The final answer of a response, normalised (:func:`normalize_number`): the number after
    the *first* ``####`` that has one, else the last number in the text; ``None`` if there is
    none. The response is first cut at a new question or chat turn (:func:`cut_response`), so
    what a model rambles on about after answering does not count."""
    text = cut_response(text)
    for marked in _MARKED.findall(text):
        value = normalize_number(marked)
        if value is not None:
            return value
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def gold_answer(solution: str) -> str:
    """The reference answer of a GSM8K solution (its ``#### N``), normalised."""
    marked = _MARKED.findall(solution)
    value = normalize_number(marked[-1]) if marked else None
    if value is None:
        raise ValueError(f"solution={solution[-60:]!r} has no '#### N' answer")
    return value


def correctness_reward(response: str, gold: str) -> float:
    """1.0 when the response's final answer (:func:`extract_answer`) equals ``gold``, else 0.0."""
    answer = extract_answer(response)
    return float(answer is not None and answer == normalize_number(str(gold)))


def is_long(response: str) -> bool:
    """Whether a response reasons before its final answer: the text before it (before the first
    ``####``, or before the last number when there is no ``####``; after :func:`cut_response`)
    holds a number or at least four words. ``"#### 18"``, ``"18"`` and ``"The answer is 18"`` are
    short; a GSM8K solution is long, and so is ``"37+48=85, 85+29=114.\\n#### 114"``. The long
    fraction is the mean of this over responses."""
    text = cut_response(response).strip()
    head = text.split(ANSWER_MARK, 1)[0] if ANSWER_MARK in text else _strip_last_number(text)
    return bool(re.search(r"\d", head)) or len(re.findall(r"[A-Za-z]+", head)) >= 4


def _strip_last_number(text: str) -> str:
    numbers = list(_NUMBER.finditer(text))
    return text[: numbers[-1].start()] if numbers else text


# ---- the mixture --------------------------------------------------------------------------------
def strip_calculator(solution: str) -> str:
    """A solution without its ``<<...>>`` calculator notes."""
    return _CALC.sub("", solution)


def long_target(solution: str) -> str:
    """The long training target: the solution's reasoning, notes removed, ending in ``#### N``."""
    reasoning = strip_calculator(solution).rsplit(ANSWER_MARK, 1)[0].rstrip()
    return f"{reasoning}\n{short_target(solution)}"


def short_target(solution: str) -> str:
    """The short training target: ``#### N`` alone."""
    return f"{ANSWER_MARK} {gold_answer(solution)}"


def format_prompt(question: str, tokenizer=None, style: str = "auto") -> str:
    """The prompt for ``question``. ``style="plain"``: :data:`PROMPT_TEMPLATE`; ``"chat"``: the
    tokenizer's chat template with the question as the user turn; ``"auto"``: the chat template
    when the tokenizer has one (instruct models), else plain."""
    if style not in ("auto", "plain", "chat"):
        raise ValueError(f"style={style!r} is not allowed: use 'auto', 'plain' or 'chat'")
    has_chat = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    if style == "chat" and not has_chat:
        raise ValueError("style='chat' is not allowed: the tokenizer has no chat template")
    if style != "plain" and has_chat:
        return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                             tokenize=False, add_generation_prompt=True)
    return PROMPT_TEMPLATE.format(question=question.strip())


def make_mixture(problems: list[dict], p_cot: float, seed: int = 0, tokenizer=None,
                 style: str = "auto") -> list[dict]:
    """SFT examples from GSM8K problems: ``round(p_cot * len(problems))`` of them, chosen at
    random (seeded), get the long target, the others the short one.

    Returns dicts with ``prompt`` (:func:`format_prompt`), ``completion`` (a space, then the
    target), ``long`` (bool) and ``answer`` (the gold answer), in the order of ``problems``.
    """
    if not isinstance(p_cot, (int, float)) or not 0.0 <= p_cot <= 1.0:
        raise ValueError(f"p_cot={p_cot!r} is not allowed: p_cot must be in [0, 1]")
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(problems)), round(p_cot * len(problems))))
    out = []
    for i, row in enumerate(problems):
        long = i in chosen
        target = long_target(row["answer"]) if long else short_target(row["answer"])
        out.append({"prompt": format_prompt(row["question"], tokenizer, style),
                    "completion": " " + target, "long": long, "answer": gold_answer(row["answer"])})
    return out
