"""How a model answers a task: greedy and sampled accuracy, long fraction, response length.

``evaluate`` draws ``n`` fresh prompts from its own seeded generator (so evaluating never moves
any training random stream), decodes them greedily and by sampling at ``temperature``, and
summarises both. Every value is a plain Python number or list, ready for JSON.
"""

from __future__ import annotations

import dataclasses

import torch

from .sampling import encode, generate
from .train.common import evaluating


def require_room(task, max_new_tokens: int):
    """Raise ValueError when ``max_new_tokens`` cannot hold ``task``'s long response and EOS."""
    if max_new_tokens < task.max_response_len:
        raise ValueError(f"max_new_tokens={max_new_tokens} is not allowed: the long response needs "
                         f"{task.max_response_len} tokens (long_len={task.long_len} plus EOS)")


def full_chain(task, responses: torch.Tensor) -> torch.Tensor:
    """Whether each response is a *complete* long answer: closed by EOS after exactly
    ``task.long_len`` tokens (right or wrong). "Long" (``task.is_long``) also counts broken
    chains that stop early; claims about the chain itself use this share."""
    return task.has_eos(responses) & (task.response_length(responses) == task.long_len)


def summarize(task, prompts: torch.Tensor, responses: torch.Tensor, max_len: int) -> dict:
    """Accuracy, long fraction and length statistics of one batch of responses.

    ``long_right_frac`` is the share of responses that are long *and* right, so
    ``long_right_frac / long_frac`` is the accuracy of the long answers alone: near 1 when the
    chain is learned, whatever the short answers do."""
    lengths = task.response_length(responses).cpu()
    correct = task.reward_e2e(prompts.cpu(), responses.cpu())
    long = task.is_long(responses).cpu()
    return {
        "acc": correct.mean().item(),
        "long_frac": long.float().mean().item(),
        "long_right_frac": (long & (correct > 0)).float().mean().item(),
        "full_frac": full_chain(task, responses).float().mean().item(),
        "len_mean": lengths.float().mean().item(),
        "len_median": lengths.float().median().item(),
        "len_hist": torch.bincount(lengths, minlength=max_len + 1).tolist(),
        "truncated_frac": (~task.has_eos(responses)).float().mean().item(),
    }


def long_accuracy(record: dict, mode: str = "sampled") -> float:
    """The accuracy of the long answers alone in an :func:`evaluate` record:
    ``{mode}_long_right_frac / {mode}_long_frac`` (0.0 when no answer was long). Near 1 once
    the model has learned the chain, whatever its short answers do; near 1/2 when the long
    route ends in a guess."""
    if mode not in ("sampled", "greedy"):
        raise ValueError(f"mode={mode!r} is not allowed: choose 'sampled' or 'greedy'")
    long = record[f"{mode}_long_frac"]
    return record[f"{mode}_long_right_frac"] / long if long > 0 else 0.0


@torch.no_grad()
def evaluate(model, task, n: int = 1000, generator: torch.Generator | None = None, *,
             seed: int = 0, temperature: float = 1.0, max_new_tokens: int | None = None,
             batch_size: int = 1024, modes: tuple[str, ...] = ("greedy", "sampled")) -> dict:
    """Greedy and sampled behaviour of ``model`` on ``n`` fresh prompts of ``task``.

    Args:
        n: number of prompts (the same prompts are used for greedy and sampled decoding).
        generator: source of prompts and samples; by default a fresh one seeded with ``seed``.
        temperature: sampling temperature for the "sampled" numbers (1.0: the model's own
            distribution, which is what length calibration is about).
        max_new_tokens: generation budget; default ``task.max_response_len``. A smaller value
            raises ``ValueError``, since a long answer could not be completed.
        batch_size: prompts decoded at once.
        modes: which decodings to run, ``"greedy"`` and/or ``"sampled"``.

    Returns a dict with ``greedy_acc``, ``sampled_acc``, ``greedy_long_frac``,
    ``sampled_long_frac``, ``greedy_full_frac``/``sampled_full_frac`` (complete chains: see
    :func:`full_chain`), ``greedy_len_mean``/``_median``/``_hist``, the same for ``sampled``,
    ``greedy_truncated_frac``/``sampled_truncated_frac`` and ``n``. ``*_len_hist[k]`` counts
    responses with ``k`` tokens before EOS.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: it must be a positive "
                         "integer")
    if not 0 < temperature < float("inf"):
        raise ValueError(f"temperature={temperature!r} is not allowed: "
                         "sampling needs a finite temperature > 0")
    max_new_tokens = task.max_response_len if max_new_tokens is None else max_new_tokens
    require_room(task, max_new_tokens)
    bad = [m for m in modes if m not in ("greedy", "sampled")] or not modes
    if bad or len(set(modes)) != len(modes):
        raise ValueError(f"modes={modes!r} is not allowed: use 'greedy' and/or 'sampled', "
                         "each at most once")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    prompts = task.prompts(n, generator)
    out = {"n": n}
    responses = {mode: [] for mode in modes}
    for chunk in prompts.split(batch_size):
        # both decodings of a chunk share one pass over its prompts (greedy draws no random
        # numbers, so the sampled ones are those of decoding the chunks mode by mode)
        encoded = (encode(model, chunk, max_new_tokens)
                   if len(modes) > 1 and hasattr(model, "make_cache") else None)
        for mode in modes:
            temp = 0.0 if mode == "greedy" else temperature
            tokens, _ = generate(model, chunk, max_new_tokens, temp, generator,
                                 eos_id=task.EOS, pad_id=task.PAD, encoded=encoded)
            resp = torch.full((len(chunk), max_new_tokens), task.PAD, dtype=torch.long)
            resp[:, : tokens.shape[1] - chunk.shape[1]] = tokens[:, chunk.shape[1]:].cpu()
            responses[mode].append(resp)
    for mode in modes:
        stats = summarize(task, prompts, torch.cat(responses[mode]), max_new_tokens)
        out.update({f"{mode}_{k}": v for k, v in stats.items()})
    return out


@torch.no_grad()
def chain_reading(model, task, n: int = 512, *, seed: int = 1, bits_only: bool = True) -> dict:
    """Whether the model has learned the chain *steps*, read with teacher forcing: feed ``n``
    fresh long sequences of ``task``'s chain format and, at each chain position, take the
    model's most likely next token. Independent of the route: no sampling, and no length
    decision weighs in.

    - ``chain_token_acc``: share of chain tokens predicted right;
    - ``chain_exact``: share of sequences whose every chain token is predicted right;
    - ``first_token_acc``: the same at the first chain token alone.

    ``bits_only=True`` (default) picks between the two bits only: "if it writes the next step,
    is that step right", which a model below the 1/3 threshold also answers at the position
    where it would rather stop (there its argmax over the whole vocabulary is EOS, by
    calibration). ``bits_only=False`` takes the argmax over every token
    (``tools/chain_probe.py``: a learned chain then reads ``(L - 1) / L`` below 1/3)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
    if bits_only and getattr(task, "chain", None) is None:
        raise ValueError(f"bits_only=True is not allowed with {type(task).__name__}: it reads "
                         "parity chains, whose steps are bits")
    long_task = dataclasses.replace(task, p_cot=1.0)  # every sequence long
    seq = long_task.sample(n, torch.Generator().manual_seed(seed))
    seq = seq.to(next(model.parameters()).device)
    P, L = task.prompt_len, task.long_len
    with evaluating(model):
        logits = model(seq)[:, P - 1 : P + L - 1].float()  # position t predicts token t + 1
    pred = (logits[..., :2] if bits_only else logits).argmax(-1)
    right = pred == seq[:, P : P + L]
    return {"chain_token_acc": right.float().mean().item(),
            "chain_exact": right.all(dim=1).float().mean().item(),
            "first_token_acc": right[:, 0].float().mean().item()}


@torch.no_grad()
def branch_probs(model, task, n: int = 1000, generator: torch.Generator | None = None, *,
                 seed: int = 0) -> dict:
    """The model's own probabilities at the two decisions that set the route (chapter 2).

    On ``n`` fresh prompts, teacher-forced:

    - ``first_token``: mean probability of writing the chain's first token ``c_1`` as the
      first response token (``s_1 = x_1`` for the full chain, ``s_2 = x_1 XOR x_2`` for
      leap-2; theory for a model that learned only the chain: ``(1 + p) / 2``);
    - ``continue``: mean probability of *not* writing EOS after that first token, i.e. of going
      on with the chain (theory ``2p / (1 + p)``).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = task.prompts(n, generator).to(device)
    first = task.chain_of(x)[:, :1]  # the long answer's first token (s_1 = x_1: full chain)
    with evaluating(model):
        logits = model(torch.cat([x, first], dim=1))
    p_first = torch.softmax(logits[:, task.prompt_len - 1].float(), -1).gather(1, first).squeeze(1)
    p_eos = torch.softmax(logits[:, task.prompt_len].float(), -1)[:, task.EOS]
    return {"first_token": p_first.mean().item(), "continue": (1 - p_eos).mean().item()}


@torch.no_grad()
def route_probs(model, task, n: int = 1000, generator: torch.Generator | None = None, *,
                seed: int = 0) -> dict:
    """The model's own first-token distribution, for a task whose long responses all open with
    one marker token ``task.MARK`` (chapter 5's multiplication).

    On ``n`` fresh prompts, at the first response position:

    - ``p_long_first``: mean probability of the marker, i.e. of taking the long route (a
      length-calibrated model gives ``p_cot``);
    - ``short_top_share``: mean, over prompts, of the largest probability of any other token
      divided by all the probability outside the marker: the share ``m`` of short answers on
      their most likely first token (:func:`ntprl.theory.divergent_threshold` of ``m`` is where
      greedy decoding turns long);
    - ``greedy_long_first``: the fraction of prompts where the marker is the most likely token.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
    if not hasattr(task, "MARK"):
        raise ValueError(f"task={task!r} is not allowed: route_probs needs a task whose long "
                         "responses open with one marker token (task.MARK)")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = task.prompts(n, generator).to(device)
    with evaluating(model):
        probs = torch.softmax(model(x)[:, -1].float(), -1)
    p_long = probs[:, task.MARK]
    others = probs.clone()
    others[:, task.MARK] = 0.0
    top = others.max(dim=1).values
    return {"p_long_first": p_long.mean().item(),
            "short_top_share": (top / others.sum(dim=1).clamp(min=1e-30)).mean().item(),
            "greedy_long_first": (p_long > top).float().mean().item()}


@torch.no_grad()
def decoding_tree(model, task, prompt, min_prob: float = 0.01, max_branch_depth: int = 2) -> dict:
    """The model's decoding tree for one prompt, as nested dicts (JSON-ready).

    Every node is ``{"token", "prob", "children"}``; a node's children are the next tokens with
    probability at least ``min_prob``, expanded for the first ``max_branch_depth`` response
    positions (where the route is decided). Below that, each branch is completed greedily and
    the leaf records ``"completion"`` (the rest of the response), ``"answer"`` and ``"correct"``.
    """
    device = next(model.parameters()).device
    prompt = torch.as_tensor(prompt, dtype=torch.long).reshape(1, -1)
    parity = task.parity(prompt).item()

    def expand(prefix: list[int], depth: int) -> list[dict]:
        x = torch.tensor([prefix], device=device)
        probs = torch.softmax(model(x)[0, -1].float(), -1).cpu()
        kids = []
        for tok in probs.argsort(descending=True).tolist():
            q = probs[tok].item()
            if q < min_prob:
                break
            node = {"token": tok, "prob": q}
            seq = prefix + [tok]
            n_resp = len(seq) - task.prompt_len
            if tok == task.EOS or n_resp >= task.max_response_len:
                node["children"] = []
            elif depth + 1 < max_branch_depth:
                node["children"] = expand(seq, depth + 1)
            else:
                room = task.max_response_len - n_resp
                out, _ = generate(model, torch.tensor([seq]), room,  # greedy
                                  eos_id=task.EOS, pad_id=task.PAD)
                seq = out[0].tolist()
                node["completion"] = [t for t in seq[len(prefix) + 1 :] if t != task.PAD]
                node["children"] = []
            if not node["children"]:
                resp = torch.tensor([[t for t in seq[task.prompt_len :] if t != task.PAD]])
                node["answer"] = task.answer(resp).item()
                node["correct"] = node["answer"] == parity
            kids.append(node)
        return kids

    with evaluating(model):
        children = expand(prompt[0].tolist(), 0)
    return {"prompt": prompt[0].tolist(), "parity": parity, "children": children}


def format_tree(tree: dict) -> str:
    """A decoding tree from :func:`decoding_tree` as indented text, one branch a line."""
    names = {0: "0", 1: "1", 2: "<eos>", 3: "<pad>"}
    lines = [f"prompt {' '.join(map(str, tree['prompt']))}   (parity {tree['parity']})"]

    def walk(nodes, indent, mass):
        for node in nodes:
            total = mass * node["prob"]
            text = names.get(node["token"], str(node["token"]))
            if "completion" in node:
                text += " " + " ".join(names.get(t, str(t)) for t in node["completion"])
            tail = ""
            if "correct" in node:
                tail = f"  -> answer {node['answer']} {'✓' if node['correct'] else '✗'}"
            lines.append(f"{indent}{text:<24} p={node['prob']:.3f}  (path {total:.3f}){tail}")
            walk(node["children"], indent + "    ", total)

    walk(tree["children"], "  ", 1.0)
    return "\n".join(lines)


def line_fit(xs, ys) -> tuple[float, float, float]:
    """Least-squares line ``ys ≈ a + b·xs``: returns ``(b, R², largest |residual|)``.

    How the book checks a scaling law: STaR rounds against ``log((1-p)/p)`` and, for contrast,
    against ``1/p`` (chapters 3 and 4); the law that fits better has the higher R². Needs at
    least two distinct ``xs``; when every ``ys`` is equal the line fits exactly (R² = 1)."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError(f"line_fit needs as many xs as ys and at least two distinct xs; got "
                         f"xs={xs}, ys={ys}")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    res = [y - (my + b * (x - mx)) for x, y in zip(xs, ys)]
    syy = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 if syy == 0 else 1.0 - sum(r * r for r in res) / syy
    return b, r2, max(abs(r) for r in res)
