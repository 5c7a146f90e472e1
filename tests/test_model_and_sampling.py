import pytest
import torch

from ntprl.models import ARCHITECTURES, GPT, GPTConfig, LinearAR, LinearARConfig
from ntprl.sampling import encode, generate
from ntprl.tasks import EOS, PAD

IDS = {"eos_id": EOS, "pad_id": PAD}
# GPT-2 style, its RoPE variant, and the Mistral style (RoPE, RMSNorm, SwiGLU, no biases)
KINDS = {"learned": {}, "rope": {"positions": "rope"}, "mistral": ARCHITECTURES["mistral"]}


def model(kind="learned", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=4, block_size=40, n_layer=2, n_head=2, n_embd=32, **KINDS[kind])
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).double().eval()


@pytest.mark.parametrize("kind", list(KINDS))
def test_cache_forward_equals_full_forward(kind):
    m = model(kind)
    x = torch.randint(0, 4, (3, 20))
    full = m(x)
    cache = m.make_cache(3, 20)
    parts = [m(x[:, :7], cache=cache), m(x[:, 7:12], cache=cache)]
    parts += [m(x[:, t : t + 1], cache=cache) for t in range(12, 20)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n_layer", [1, 3])
def test_last_only_gives_the_last_logits_and_fills_the_cache(kind, n_layer):
    m = model(kind, n_layer=n_layer)
    x = torch.randint(0, 4, (3, 20))
    full = m(x)
    assert torch.allclose(m(x, last_only=True), full[:, -1:], atol=1e-10)
    cache = m.make_cache(3, 20)
    first = m(x[:, :12], cache=cache, last_only=True)
    assert first.shape == (3, 1, 4) and torch.allclose(first, full[:, 11:12], atol=1e-10)
    # the cache holds every prompt position: the next chunk sees the same context as before
    rest = m(x[:, 12:], cache=cache)
    assert torch.allclose(rest, full[:, 12:], atol=1e-10)


def naive_generate(m, prompts, n_new, temperature, generator):
    """The slow, obvious reference: recompute everything, one token at a time, row by row."""
    rows = prompts.tolist()
    # draw the same uniforms as the sampler: one per row per step, for all rows
    done = [False] * len(rows)
    for _ in range(n_new):
        logits = m(torch.tensor(rows))[:, -1]
        logits[:, PAD] = float("-inf")
        if temperature == 0:
            nxt = logits.argmax(-1).tolist()
        else:
            probs = torch.softmax(logits.float() / temperature, -1)
            u = torch.rand(len(rows), 1, generator=generator)
            nxt = [int((probs[i].cumsum(0) <= u[i]).sum().clamp(max=3)) for i in range(len(rows))]
        for i in range(len(rows)):
            rows[i].append(PAD if done[i] else nxt[i])
            done[i] = done[i] or nxt[i] == EOS
        if all(done):
            break
    return torch.tensor(rows)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("temperature", [0.0, 1.0, 1.5])
def test_sampler_equals_naive_generation(kind, temperature):
    m = model(kind, seed=1)
    with torch.no_grad():  # make EOS likely so rows stop at different times
        m.head.weight[EOS] += 0.3 * m.head.weight[0]
    prompts = torch.randint(0, 2, (16, 6), generator=torch.Generator().manual_seed(0))
    tok, mask = generate(m, prompts, 12, temperature, torch.Generator().manual_seed(5), **IDS)
    ref = naive_generate(m, prompts, 12, temperature, torch.Generator().manual_seed(5))
    assert torch.equal(tok, ref)
    tok2, mask2 = generate(m, prompts, 12, temperature, torch.Generator().manual_seed(5),
                          use_cache=False, **IDS)
    assert torch.equal(tok, tok2) and torch.equal(mask, mask2)


def test_response_mask_includes_eos_and_stops_rows():
    m = model(seed=2)
    with torch.no_grad():
        m.head.weight[EOS] += 0.5 * m.head.weight[1]
    prompts = torch.randint(0, 2, (64, 5), generator=torch.Generator().manual_seed(1))
    tok, mask = generate(m, prompts, 10, 1.0, torch.Generator().manual_seed(0), **IDS)
    assert tok.shape == mask.shape and tok.shape[1] <= 15
    assert torch.equal(tok[:, :5], prompts) and not mask[:, :5].any()
    saw_eos = 0
    for row, mrow in zip(tok.tolist(), mask.tolist()):
        resp, m_ = row[5:], mrow[5:]
        if EOS in resp:
            k = resp.index(EOS)
            saw_eos += 1
            assert m_[: k + 1] == [True] * (k + 1)      # response through EOS is in the mask
            assert all(t == PAD for t in resp[k + 1 :])   # then PAD
            assert not any(m_[k + 1 :])
        else:
            assert all(m_)
    assert saw_eos > 10


class FirstRowLong(torch.nn.Module):
    """Writes EOS at once in every row but the first, which writes 1s at positions 3..9."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        B, T = tokens.shape
        logits = torch.zeros(B, T, 4)
        logits[:, :, EOS] = 1.0
        logits[0, : 9, 1] = 2.0
        return logits + self.w


def test_generation_stops_when_all_rows_end():
    prompts = torch.zeros(4, 3, dtype=torch.long)
    tok, mask = generate(FirstRowLong(), prompts, 20, **IDS)
    assert tok.shape == (4, 3 + 8)  # the first row writes 7 ones, then EOS; then all stop
    assert tok[0, 3:].tolist() == [1] * 7 + [EOS]
    assert tok[1:, 3:].tolist() == [[EOS] + [PAD] * 7] * 3
    assert mask[1:, 3:].sum(1).tolist() == [1, 1, 1]


def test_greedy_is_deterministic_and_restores_train_mode():
    m = model(seed=4).train()
    prompts = torch.randint(0, 2, (8, 6))
    a, _ = generate(m, prompts, 8, **IDS)
    b, _ = generate(m, prompts, 8, **IDS)
    assert torch.equal(a, b) and m.training


def test_num_params():
    m = GPT(GPTConfig(vocab_size=4, block_size=10, n_layer=1, n_head=1, n_embd=8))
    # tok 4*8 + pos 10*8 + block (2 LN 32 + qkv 8*24+24 + proj 72 + fc 8*32+32 + proj 32*8+8)
    # + ln_f 16 + head 32
    assert m.num_params() == 32 + 80 + (32 + 216 + 72 + 288 + 264) + 16 + 32


def test_mistral_style_model():
    """RoPE (no position table), RMSNorm and a SwiGLU MLP without biases, with about as many
    weights as the GPT-2 style model of the same sizes."""
    sizes = dict(vocab_size=4, block_size=40, n_layer=2, n_head=4, n_embd=128)
    gpt2 = GPT(GPTConfig(**sizes, **ARCHITECTURES["gpt2"]))
    mistral = GPT(GPTConfig(**sizes, **ARCHITECTURES["mistral"]))
    names = dict(mistral.named_parameters())
    assert mistral.pos_emb is None and not any(n.endswith("bias") for n in names)
    assert names["blocks.0.mlp.gate.weight"].shape == (352, 128)  # 8/3 * 128, rounded up to 32
    assert type(mistral.blocks[0].ln1).__name__ == "RMSNorm" and "ln_f.weight" in names
    assert abs(mistral.num_params() / gpt2.num_params() - 1) < 0.05
    assert GPT(GPTConfig(**sizes)).num_params() == gpt2.num_params()  # gpt2 is the default


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_embd=30, n_head=4), "n_embd"),
    (dict(positions="alibi"), "positions"),
    (dict(norm="batch"), "norm"),
    (dict(mlp="relu"), "mlp"),
    (dict(n_layer=0), "n_layer"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_model_config(kwargs, field):
    cfg = dict(vocab_size=4, block_size=10)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=field):
        GPTConfig(**cfg)


def test_bad_generate_inputs():
    m = model()
    p = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(m, p, 0, **IDS)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(m, p, 36, **IDS)  # 5 + 36 > block_size 40
    with pytest.raises(ValueError, match="temperature"):
        generate(m, p, 3, temperature=-1.0, **IDS)
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 41, dtype=torch.long))


def test_inverse_cdf_never_falls_off_the_end():
    """The float CDF can sum to just below 1; a uniform draw above its last value must still
    land on a token with probability > 0, never on the impossible last token (PAD)."""
    from ntprl import sampling

    u = torch.tensor([[1.0 - 2.0 ** -24]])  # the largest float32 below 1
    for seed in range(200):  # find logits whose float CDF ends below u
        logits = torch.randn(1, 5000, generator=torch.Generator().manual_seed(seed)) * 3
        logits[0, -1] = float("-inf")
        if float(torch.softmax(logits, -1).cumsum(-1)[0, -1]) < float(u):
            break
    else:
        pytest.skip("no float CDF below 1 found")
    idx = sampling._next_token(logits, 1.0, u)
    assert int(idx) != logits.shape[-1] - 1 and torch.isfinite(logits[0, idx])


@pytest.mark.parametrize("temperature", [0.5, 1.7])
def test_sampler_draws_follow_tempered_softmax(temperature):
    """Goodness of fit: draws at temperature T follow softmax(z / T) (a chi-square test at the
    0.1% level on 40000 draws), and not softmax(z)."""
    from ntprl import sampling

    z = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 40000
    gen = torch.Generator().manual_seed(0)
    draws = sampling._next_token(z.repeat(n, 1), temperature, torch.rand(n, 1, generator=gen))
    counts = torch.bincount(draws, minlength=5).double()

    def chi2(probs):
        expected = n * probs.double()
        return float(((counts - expected) ** 2 / expected).sum())

    critical = 18.47  # chi-square, 4 degrees of freedom, p = 0.001
    assert chi2(torch.softmax(z / temperature, -1)) < critical
    assert chi2(torch.softmax(z, -1)) > critical


class BatchSizes(torch.nn.Module):
    """Wraps a model and records the batch size of every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.sizes = inner, []

    def make_cache(self, batch_size, max_len):
        return self.inner.make_cache(batch_size, max_len)

    def forward(self, tokens, cache=None, last_only=False):
        self.sizes.append(tokens.shape[0])
        return self.inner(tokens, cache=cache, last_only=last_only)


@pytest.mark.parametrize("use_cache", [True, False])
def test_finished_rows_leave_the_batch_without_changing_the_samples(use_cache):
    m = model(seed=1)
    with torch.no_grad():  # EOS likely: most rows stop within a few tokens
        m.head.weight[EOS] += 0.5 * m.head.weight[0]
    prompts = torch.randint(0, 2, (64, 6), generator=torch.Generator().manual_seed(0))
    wrapped = BatchSizes(m)
    tok, mask = generate(wrapped, prompts, 12, 1.0, torch.Generator().manual_seed(5),
                         use_cache=use_cache, **IDS)
    ref = naive_generate(m, prompts, 12, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(tok, ref)
    full = generate(m, prompts, 12, 1.0, torch.Generator().manual_seed(5), use_cache=use_cache,
                    compact=False, **IDS)
    assert torch.equal(tok, full[0]) and torch.equal(mask, full[1])
    # the batch shrinks as rows finish, and never below the rows still writing
    assert wrapped.sizes[0] == 64 and min(wrapped.sizes) < 32, wrapped.sizes
    assert all(a >= b for a, b in zip(wrapped.sizes, wrapped.sizes[1:]))
    for t, size in zip(range(6, tok.shape[1]), wrapped.sizes):
        assert size >= int(mask[:, t].sum()), (t, size)


@pytest.mark.parametrize("kind", ["gpt", "linear"])
def test_encoded_prompts_decode_as_without_and_stay_reusable(kind):
    if kind == "gpt":
        m = model(seed=1)
        with torch.no_grad():  # EOS likely: rows finish at different times, the batch shrinks
            m.head.weight[EOS] += 0.3 * m.head.weight[0]
    else:
        m = LinearAR(LinearARConfig(block_size=18, init_std=0.5))
    prompts = torch.randint(0, 2, (32, 6), generator=torch.Generator().manual_seed(0))
    enc = encode(m, prompts, 12)
    for temperature in (0.0, 1.0, 0.0, 1.5):  # the same encoding, four decodings
        plain = generate(m, prompts, 12, temperature, torch.Generator().manual_seed(5), **IDS)
        shared = generate(m, prompts, 12, temperature, torch.Generator().manual_seed(5),
                          encoded=enc, **IDS)
        assert torch.equal(plain[0], shared[0]) and torch.equal(plain[1], shared[1])
    assert enc.cache.pos == 6  # decoding used copies


def test_encoded_for_other_prompts_is_refused():
    m = model(seed=1)
    prompts = torch.randint(0, 2, (8, 6), generator=torch.Generator().manual_seed(0))
    enc = encode(m, prompts, 12)
    with pytest.raises(ValueError, match="encoded is not allowed: it was made for other"):
        generate(m, 1 - prompts, 12, encoded=enc, **IDS)
    with pytest.raises(ValueError, match="encoded is not allowed: it was made for other"):
        generate(m, prompts, 10, encoded=enc, **IDS)
    with pytest.raises(ValueError, match="use_cache=False"):
        generate(m, prompts, 12, encoded=enc, use_cache=False, **IDS)
    with pytest.raises(ValueError, match="has no KV cache"):
        encode(torch.nn.Linear(2, 2), prompts, 12)
    with pytest.raises(ValueError, match="another model encoded"):
        generate(model(seed=2), prompts, 12, encoded=enc, **IDS)


def test_decoding_starts_from_the_encoded_logits_without_a_prompt_pass():
    m = model(seed=1)
    prompts = torch.randint(0, 2, (8, 6), generator=torch.Generator().manual_seed(0))
    enc = encode(m, prompts, 12)
    enc.logits[:, EOS] = 1e4  # the encoding says: stop at once
    wrapped = BatchSizes(m)
    enc.model = wrapped
    tok, mask = generate(wrapped, prompts, 12, encoded=enc, **IDS)
    assert wrapped.sizes == []  # every row ended on the first token: the model never ran
    assert tok.shape == (8, 7) and (tok[:, 6] == EOS).all() and mask[:, 6].all()


def test_bad_sampling_and_advantage_inputs_name_the_field():
    from ntprl.metrics import evaluate
    from ntprl.tasks import ParityTask
    from ntprl.train import rl

    task = ParityTask(4, 0.5)
    model = GPT(GPTConfig(vocab_size=4, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=r"prompts=\(0, 4\)"):
        generate(model, torch.zeros(0, 4, dtype=torch.long), 2, eos_id=2, pad_id=3)
    with pytest.raises(ValueError, match="eos_id=3"):
        generate(model, task.prompts(2, torch.Generator()), 2, eos_id=3, pad_id=3)
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate(model, task, 8, batch_size=0)
    with pytest.raises(ValueError, match="group_size=2"):
        rl.group_advantages(torch.ones(5), 2)
