"""What both trainers share: argument checks, the optimiser, eval mode, and checkpoints.

A checkpoint carries the *identity* of its run: every setting that changes the result (the
hyperparameters, the task, the model's class and config, and a digest of the weights the run
started from). Resuming compares the identity stored in the file with the one of the run being
started and refuses, in one line that names each differing field, to continue another run.
Checkpoints hold only tensors and plain Python (the data generator's state is a CPU tensor),
so they load with ``torch.load(..., weights_only=True)``: a file from elsewhere cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import os
import pathlib
import warnings

import torch

OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
BY_LENGTH = ("auto", "yes", "no")
CUDA_GRAPHS = ("auto", "yes", "no")


# ---- argument checks ----------------------------------------------------------------------------
def positive(name: str, value, kind=int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a positive int (or number)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        what = "integer" if kind is int else "number"
        raise ValueError(f"{name}={value!r} is not allowed: it must be a positive {what}")


def one_of(name: str, value, allowed) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {tuple(allowed)}")


def check_eval(eval_every, eval_fn) -> None:
    """The trainers' evaluation arguments: ``eval_every`` >= 0, and an ``eval_fn`` to call."""
    if not isinstance(eval_every, int) or isinstance(eval_every, bool) or eval_every < 0:
        raise ValueError(f"eval_every={eval_every!r} is not allowed: it must be an integer >= 0")
    if eval_every and eval_fn is None:
        raise ValueError(f"eval_fn=None is not allowed with eval_every={eval_every}: "
                         "pass the function to call")


def check_context(model, task) -> None:
    """Raise when the model's context (``config.block_size``) cannot hold a whole sequence."""
    block = getattr(getattr(model, "config", None), "block_size", None)
    if block is not None and block < task.seq_len:
        raise ValueError(f"block_size={block} is not allowed: the model's context is shorter "
                         f"than the task's longest sequence ({task.seq_len} tokens)")


# ---- the optimiser and one step -----------------------------------------------------------------
def by_length_on(by_length: str, device) -> bool:
    """Whether a batch runs by length (:func:`ntprl.train.ntp.length_groups`): ``"yes"``,
    ``"no"``, or ``"auto"``: on the CPU, where the compute follows the tokens, and not on a
    GPU, where small models are bound by kernel launches, which groups multiply."""
    one_of("by_length", by_length, BY_LENGTH)
    return by_length == "yes" or (by_length == "auto" and torch.device(device).type == "cpu")


def make_optimizer(model, optimizer: str, lr: float, betas: tuple[float, float] = (0.9, 0.95),
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The trainers' optimiser: ``"adamw"`` (with ``betas``) or ``"sgd"`` (plain, no momentum)."""
    one_of("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    # on a GPU, the fused kernel updates every parameter in one launch (the same arithmetic)
    fused = all(p.is_cuda for p in model.parameters()) or None
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay,
                             fused=fused)


PRECISION_VAR = "NTPRL_PRECISION"  # what precision="auto" means: "auto" (default), "fp32", "bf16"


def native_bf16(device) -> bool:
    """Whether ``device`` multiplies bf16 matrices natively: a CUDA GPU that supports bf16, or
    a CPU with AVX512-BF16 or AMX instructions (there a bf16 matrix product of the book's
    sizes runs ~2.5x as fast as a float32 one; elsewhere the CPU emulates it, slowly)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, torch >= 2.3
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device) -> str:
    """``"fp32"`` or ``"bf16"`` for the trainers' ``precision`` argument on ``device``.
    ``"auto"`` is ``$NTPRL_PRECISION`` when set (``fp32`` pins float32 for every call that
    leaves ``precision="auto"``), else bf16 where the device multiplies bf16 natively
    (:func:`native_bf16`), else float32. ``"fp32"`` and ``"bf16"`` are returned as given."""
    one_of("precision", precision, PRECISIONS)
    if precision == "auto":
        precision = os.environ.get(PRECISION_VAR, "auto").strip().lower() or "auto"
        one_of(f"${PRECISION_VAR}", precision, PRECISIONS)
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(model, precision: str = "auto"):
    """The context the trainers run forward passes in.

    ``"fp32"``: plain float32. ``"bf16"``: bfloat16 autocast on the model's device (matrix
    products in bf16; weights, optimiser state, the attention kernel on a CPU, and the loss in
    float32).
    ``"auto"``: :func:`resolve_precision`: bf16 where the device multiplies bf16 natively (a
    CUDA GPU, where small models are otherwise bound by memory traffic and launches; a CPU with
    AVX512-BF16 or AMX, where a training step of the book's models takes 0.55-0.65x the float32
    step), float32 elsewhere, or what ``$NTPRL_PRECISION`` says. Sampling (``ntprl.sampling``)
    always runs in float32.
    """
    dev = next(model.parameters()).device
    if resolve_precision(precision, dev) == "fp32":
        return contextlib.nullcontext()
    # a bf16 copy of a weight cached while a CUDA graph is recorded would outlive the recording
    capturing = dev.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(dev.type, dtype=torch.bfloat16, cache_enabled=not capturing)


def optimizer_step(opt, loss: torch.Tensor, model, grad_clip: float | None) -> None:
    """Backpropagate ``loss``, clip the global gradient norm to ``grad_clip`` (None: no
    clipping) and take one optimiser step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def cuda_graph_on(cuda_graph: str, model, opt: torch.optim.Optimizer, by_length: bool) -> bool:
    """Whether a trainer records its step as a CUDA graph (:class:`TrainStep`): ``"no"``;
    ``"yes"`` (a ``ValueError`` names what stands in the way); or ``"auto"``: whenever it can,
    i.e. the model is on a CUDA GPU, the optimiser is the fused AdamW (whose learning rate can
    live in a device tensor: plain SGD reads it on the CPU), batches keep one shape (not
    ``by_length``) and the model draws no random numbers (no dropout)."""
    one_of("cuda_graph", cuda_graph, CUDA_GRAPHS)
    if cuda_graph == "no":
        return False
    dropout = getattr(getattr(model, "config", None), "dropout", 0.0)
    fused_adamw = isinstance(opt, torch.optim.AdamW) and bool(opt.defaults.get("fused"))
    problems = [why for why, bad in (
        ("the model is not on a CUDA GPU", next(model.parameters()).device.type != "cuda"),
        (f"the optimiser is {type(opt).__name__} (only the fused AdamW runs inside a graph)",
         not fused_adamw),
        ("by_length batches change shape every step", by_length),
        (f"the model has dropout={dropout} (random numbers)", bool(dropout)))
        if bad]
    if cuda_graph == "yes" and problems:
        raise ValueError(f"cuda_graph='yes' is not allowed here: {'; '.join(problems)}")
    return not problems


class TrainStep:
    """One optimiser step on a batch: ``loss = loss_fn(*batch)``, backward, clipping
    (:func:`optimizer_step`). ``step(lr, *batch)`` sets the learning rate, takes the step and
    returns the loss (detached: nothing outside may hold on to the step's autograd graph).

    With ``graph=True`` (a CUDA GPU; see :func:`cuda_graph_on`) the step is recorded once as a
    CUDA graph and then replayed. A small model's step is hundreds of short kernels, and
    launching them one at a time from Python takes longer than running them: the GPU waits
    for the CPU. A replay launches the whole step at once. What that takes:

    - the batch is copied into fixed input buffers (every batch must have the first one's
      shapes), and the returned loss is a fixed tensor that the next step overwrites;
    - the learning rate lives in a device tensor the recorded AdamW step reads, so a schedule
      still applies;
    - the first ``warmup`` steps run eagerly on a side stream (libraries set themselves up
      there, outside the recording); the next is recorded, then replayed, as is every later
      one. Nothing else may change the parameters' or gradients' storage meanwhile (loading
      a state dict copies in place, which is fine).

    The arithmetic is that of the eager step (a test compares the two on a GPU). If the
    recording fails, a warning says why and the steps run eagerly from then on.
    """

    def __init__(self, loss_fn, model, opt: torch.optim.Optimizer, grad_clip: float | None, *,
                 graph: bool = False, warmup: int = 3):
        self.loss_fn, self.model, self.opt, self.grad_clip = loss_fn, model, opt, grad_clip
        self.graph, self.warmup, self.calls = graph, warmup, 0
        self.static: list[torch.Tensor] | None = None
        self.recorded: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None
        if graph:
            device = next(model.parameters()).device
            self.lr = torch.tensor(float(opt.param_groups[0]["lr"]), device=device)
            for group in opt.param_groups:  # the recorded step reads the rate from here
                group["lr"], group["capturable"] = self.lr, True
        else:  # a checkpoint of a recorded run may bring capturable=True, which a CPU refuses
            for group in opt.param_groups:
                if group.get("capturable"):
                    group["capturable"] = opt.defaults.get("capturable", False)

    def _eager(self, batch) -> torch.Tensor:
        loss = self.loss_fn(*batch)
        optimizer_step(self.opt, loss, self.model, self.grad_clip)
        return loss.detach()

    def __call__(self, lr: float, *batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if not self.graph:
            for group in self.opt.param_groups:
                group["lr"] = lr
            return self._eager(batch)
        self.lr.fill_(lr)
        if self.static is None:
            self.static = [b.to(self.lr.device, copy=True) for b in batch]
        else:
            for s, b in zip(self.static, batch, strict=True):
                if s.shape != b.shape:
                    raise ValueError(f"a batch of shape {tuple(b.shape)} is not allowed: the "
                                     f"recorded step takes {tuple(s.shape)}")
                s.copy_(b, non_blocking=True)
        if self.recorded is not None:
            self.recorded.replay()
            return self.loss
        main = torch.cuda.current_stream()
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(main)
            with torch.cuda.stream(side):
                loss = self._eager(self.static)
            main.wait_stream(side)
            loss.record_stream(main)
            return loss
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss = self.loss_fn(*self.static)
                # its zero_grad(set_to_none=True) runs once, here: the recording allocates the
                # gradients, and every replay writes them in place
                optimizer_step(self.opt, loss, self.model, self.grad_clip)
        except Exception as err:  # noqa: BLE001 - any failure: say so and stay eager
            warnings.warn(f"recording the training step as a CUDA graph failed ({err!r}); "
                          "training goes on without it", RuntimeWarning, stacklevel=2)
            self.graph = False
            self.opt.zero_grad(set_to_none=True)
            return self(lr, *batch)
        self.recorded, self.loss = graph, loss.detach()
        del loss  # keep no autograd graph of the recording alive
        graph.replay()  # recording ran nothing: this is the step
        return self.loss


@contextlib.contextmanager
def evaluating(model):
    """Put ``model`` in eval mode for the ``with`` block and restore its mode after it, even
    when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# ---- run identity and checkpoints ---------------------------------------------------------------
def weights_digest(state: dict) -> str:
    """A short SHA-1 of a state dict's names, shapes, dtypes and values."""
    h = hashlib.sha1()
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _plain(value):
    """``value`` as plain Python that ``weights_only`` loading accepts and ``==`` compares."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if callable(value):
        return _callable_identity(value)
    return repr(value)


def _callable_identity(fn):
    """What a callable setting (a reward function, say) is, stable from one process to the
    next (no memory addresses) and different for different callables: a module-level function
    by its name; a lambda or a function defined inside another by its name and a digest of its
    code, defaults and captured values (two lambdas of one module would otherwise share the
    name ``<lambda>``); a ``functools.partial`` by its function and arguments; a bound method
    by its function and object; any other callable object by its class and attributes."""
    if isinstance(fn, functools.partial):
        return {"partial": _plain(fn.func), "args": _plain(list(fn.args)),
                "keywords": _plain(fn.keywords)}
    if inspect.ismethod(fn):
        return {"method": _plain(fn.__func__), "of": _plain(fn.__self__)}
    code = getattr(fn, "__code__", None)
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', None)}"
    if code is not None:  # a Python function
        if "<" not in name:  # module level (or a class's): its name says which
            return name
        cells = [f"{getattr(c, '__module__', '?')}.{c.__qualname__}"  # by name: a function
                 if callable(c) and hasattr(c, "__qualname__")  # may capture itself
                 else c for c in closure_values(fn)]
        made = repr((_code_text(code), _plain([fn.__defaults__, fn.__kwdefaults__, cells])))
        return f"{name}#{hashlib.sha1(made.encode()).hexdigest()[:12]}"
    if hasattr(fn, "__qualname__"):  # a builtin function
        return name
    cls = type(fn)  # a callable object
    return {"callable": f"{cls.__module__}.{cls.__qualname__}",
            "attributes": _plain(dict(vars(fn))) if hasattr(fn, "__dict__") else repr(fn)}


def closure_values(fn) -> list:
    """The values a function captured from enclosing scopes (None for a cell not yet
    filled, which reading would raise on)."""
    values = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # empty cell
            values.append(None)
    return values


def _code_text(code) -> str:
    """A code object's bytecode, constants (nested code objects too) and names, as text."""
    consts = [_code_text(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return repr((code.co_code, consts, code.co_names))


def model_identity(model) -> dict:
    """The model's class and config (a dataclass) or, without one, its parameter shapes. A
    config field its class lists in ``LATER_FIELDS`` (added after checkpoints were made) is
    left out while at the value those checkpoints had, so they stay valid."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        later = getattr(type(config), "LATER_FIELDS", {})
        spec = {k: v for k, v in _plain(config).items() if k not in later or v != later[k]}
    else:
        spec = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"class": type(model).__name__, "config": spec}


def run_identity(model, task, **settings) -> dict:
    """Everything that makes a run what it is: ``settings``, the task, the model's class and
    config, and a digest of the weights it starts from. Plain Python, comparable with ``==``."""
    return {"task": repr(task), "model": model_identity(model),
            "start_weights": weights_digest(model.state_dict()), **_plain(settings)}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_diff(stored: dict, current: dict) -> str:
    """``"lr: 0.001 there, 0.0003 here; steps: ..."``: the fields where two identities differ."""
    a, b = _flatten(stored), _flatten(current)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    return "; ".join(f"{k}: {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} here"
                     for k in keys)


def refuse_mismatch(what: str, stored: dict, current: dict) -> None:
    """Raise a one-line ``ValueError`` when ``stored`` != ``current`` (two run identities)."""
    if stored != current:
        raise ValueError(f"{what} belongs to another run ({identity_diff(stored, current)}): "
                         "remove it, or use another path to keep both")


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed into
    place (a killed process or a lost machine never leaves a half-written checkpoint under the
    real name), creating the folder if needed. A failed save removes its temporary file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike | None, identity: dict) -> dict | None:
    """The checkpoint at ``path`` (None when there is none yet), loaded on the CPU with
    ``weights_only=True``; refused when it belongs to a run with another ``identity``."""
    if path is None or not os.path.exists(path):
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding code
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint={os.fspath(path)!r} cannot be read ({first}): "
                         "remove it to start again") from None
    if not isinstance(ck, dict) or "identity" not in ck:
        raise ValueError(f"checkpoint={os.fspath(path)!r} is not an ntprl checkpoint: "
                         "remove it to start again")
    refuse_mismatch(f"checkpoint={os.fspath(path)!r}", ck["identity"], identity)
    return ck
