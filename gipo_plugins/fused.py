r"""Fused LM head and policy loss: token log-probs of $hW^\top + b$ without the (tokens × vocab) logits.

For a language-model policy the logits $z = (hW^\top + b)/T$ of $N$ tokens over a vocabulary of $V$
dominate the memory of the loss: with materialised logits, several $N \times V$ buffers (logits,
log-softmax, their gradients) are alive at once. Every policy term depends on the logits only
through the log-probability of the taken token $a_n$,

$$
\log\pi_n = z_{n,a_n} - \log Z_n,\quad \log Z_n = \log\textstyle\sum_v e^{z_{n,v}},\qquad
\frac{\partial L}{\partial z_{n,v}} = g_n\,(\mathbb{1}[v = a_n] - p_{n,v}),\quad
g_n = \frac{\partial L}{\partial \log\pi_n},
$$

so tokens are processed in chunks of `chunk_size` rows, one chunk's logits at a time in one reused
buffer, and the $N \times V$ logits never exist. Two entry points:

* [`fused_linear_policy_loss`][gipo_plugins.fused.fused_linear_policy_loss] — the loss in one pass
  (the scheme of Liger-Kernel's fused linear losses): per chunk, logits → $\log Z$ →
  $\log\pi$ → the core objective's per-token terms, differentiated by autograd to get $g_n$ →
  $\partial L/\partial z$ in place → $\partial L/\partial h$, $\partial L/\partial W$,
  $\partial L/\partial b$. The backward only scales these by the incoming gradient, so the cost is
  the three matrix products of materialised logits. Needs a scalar loss whose terms are per token
  (token-level ratios; weights such as per-sequence normalisations are fine).
* [`chunked_token_log_probs`][gipo_plugins.fused.chunked_token_log_probs] — differentiable
  per-token log-probs (and entropies) for any downstream loss (sequence-level ratios, KL and
  entropy terms, a trainer's own loss): the forward keeps $\log\pi_n$ and $\log Z_n$ per token,
  the backward recomputes each chunk's logits (one extra $N \times H \times V$ product).

The policy terms, reductions and diagnostics are always the core objective's own
([`PolicyObjective`][gipo_plugins.objectives.PolicyObjective]); no formula is restated here.

Numerics: logits, log-softmax and gradient accumulators are at least fp32 whatever the input dtype
and any autocast (half-precision weights are upcast once per pass, a transient copy the size of $W$;
fp64 stays fp64); gradients are returned in the inputs' dtypes. Only unmasked tokens go through the
LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gipo_plugins._checks import check_broadcasts_to, check_positive
from gipo_plugins.objectives import ObjectiveResult, PolicyObjective

DEFAULT_CHUNK_SIZE = 1024
"""Tokens per chunk: the largest transient buffer holds `chunk_size` × vocab fp32 values."""

FUSED_REDUCTIONS = ("mean", "sum")


# --- shared pieces ------------------------------------------------------------------------------


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    """At least fp32: half-precision inputs are computed in fp32, fp64 stays fp64."""
    return torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)


def _chunk_logits(buffer: Tensor, hidden: Tensor, weight: Tensor, bias: Tensor | None, temperature: float) -> Tensor:
    """$(hW^\\top + b)/T$ of one chunk in `buffer`'s dtype, written into its first rows."""
    z = buffer[: hidden.shape[0]]
    torch.mm(hidden, weight.t(), out=z)
    if bias is not None:
        z.add_(bias)
    if temperature != 1.0:
        z.div_(temperature)
    return z


def _normalise_in_place(z: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Turn a chunk's logits into $e^{z - \\max z}$ in place; returns it, $s$, $\\log Z$ and the entropy.

    With $y = z - \\max z$ and $s = \\sum e^y$: $\\log Z = \\max z + \\log s$ and
    $H = \\log s - \\sum e^y y / s$ (one extra chunk-sized buffer, only for the entropy).
    """
    peak = z.amax(1)
    y = z.sub_(peak[:, None])
    entropy = None
    if with_entropy:
        e = torch.exp(y)
        s = e.sum(1)
        entropy = s.log() - torch.bmm(e[:, None, :], y[:, :, None]).view(-1) / s
        y.copy_(e)
        del e
    else:
        s = y.exp_().sum(1)
    return y, s, peak + s.log(), entropy


def _logit_grad_in_place(p: Tensor, token_ids: Tensor, grad_log_prob: Tensor, temperature: float) -> Tensor:
    """$\\partial L/\\partial(hW^\\top + b) = g\\,(\\mathbb{1}[v = a] - p)/T$, written over `p`."""
    grad = p.mul_(-grad_log_prob[:, None]).scatter_add_(1, token_ids[:, None], grad_log_prob[:, None])
    return grad.div_(temperature) if temperature != 1.0 else grad


def _accumulate_grads(grad_z: Tensor, hidden: Tensor, weight: Tensor, rows: slice, grads: list) -> None:
    """`grads = [d hidden, d weight, d bias]` (each or `None`) += this chunk's share."""
    grad_hidden, grad_weight, grad_bias = grads
    if grad_hidden is not None:
        torch.mm(grad_z, weight, out=grad_hidden[rows])
    if grad_weight is not None:
        grad_weight.addmm_(grad_z.t(), hidden)
    if grad_bias is not None:
        grad_bias += grad_z.sum(0)


def _new_grads(hidden: Tensor, weight: Tensor, has_bias: bool, needs: tuple[bool, ...], dtype: torch.dtype) -> list:
    device = hidden.device
    return [
        torch.empty(hidden.shape, dtype=dtype, device=device) if needs[0] else None,
        torch.zeros(weight.shape, dtype=dtype, device=device) if needs[1] else None,
        torch.zeros(weight.shape[0], dtype=dtype, device=device) if has_bias and needs[2] else None,
    ]


def _grads_as_inputs(grads: list, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> list:
    return [None if g is None else g.to(x.dtype) for g, x in zip(grads, (hidden, weight, bias), strict=True)]


# --- one pass: the loss, its gradient computed chunk by chunk in the forward --------------------


class _FusedLinearPolicyLoss(torch.autograd.Function):
    """Scalar $\\sum_n c_n\\,\\text{term}_n$ and its gradients in one chunked pass (no logits kept)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, token_ids: Tensor, old_log_prob: Tensor,
                advantages: Tensor, coefficients: Tensor, objective: PolicyObjective, chunk_size: int,
                temperature: float, with_entropy: bool, needs_grad: bool,
                ) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
        ctx.set_materialize_grads(False)
        with torch.autocast(hidden.device.type, enabled=False):  # the math stays in at least fp32
            dtype = _compute_dtype(hidden, weight)
            weight_c, bias_c = weight.to(dtype), None if bias is None else bias.to(dtype)
            n_tokens = hidden.shape[0]
            log_prob = hidden.new_empty(n_tokens, dtype=dtype)
            entropy = torch.empty_like(log_prob) if with_entropy else None
            loss = hidden.new_zeros((), dtype=dtype)
            needs = tuple(needs_grad and needed for needed in ctx.needs_input_grad[:3])
            grads = _new_grads(hidden, weight, bias is not None, needs, dtype)
            buffer = hidden.new_empty((min(chunk_size, n_tokens), weight.shape[0]), dtype=dtype)
            for start in range(0, n_tokens, chunk_size):
                rows = slice(start, min(start + chunk_size, n_tokens))
                hidden_c = hidden[rows].to(dtype)
                z = _chunk_logits(buffer, hidden_c, weight_c, bias_c, temperature)
                target = z.gather(1, token_ids[rows, None]).squeeze(1)
                e, sum_e, log_z, chunk_entropy = _normalise_in_place(z, with_entropy)
                log_prob[rows] = target - log_z
                if chunk_entropy is not None:
                    entropy[rows] = chunk_entropy
                with torch.enable_grad():  # the core objective's per-token terms, differentiated by autograd
                    leaf = log_prob[rows].detach().requires_grad_(needs_grad)
                    terms = objective(leaf, old_log_prob[rows], advantages[rows], None, reduction="none").loss
                    chunk_loss = (terms * coefficients[rows]).sum()
                    if needs_grad:
                        (grad_log_prob,) = torch.autograd.grad(chunk_loss, leaf)
                loss += chunk_loss.detach()
                if needs_grad:
                    p = e.div_(sum_e[:, None])
                    grad_z = _logit_grad_in_place(p, token_ids[rows], grad_log_prob.to(dtype), temperature)
                    _accumulate_grads(grad_z, hidden_c, weight_c, rows, grads)
        ctx.save_for_backward(*(g for g in _grads_as_inputs(grads, hidden, weight, bias) if g is not None))
        ctx.present = [g is not None for g in grads]
        ctx.mark_non_differentiable(*(x for x in (log_prob, entropy) if x is not None))
        return loss, log_prob, entropy

    @staticmethod
    def backward(ctx, grad_loss: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, ...]:
        if grad_loss is None:
            return (None,) * 12
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) if present else None for present in ctx.present]
        if not torch.equal(grad_loss, torch.ones_like(grad_loss)):  # e.g. a loss scale: one extra pass
            grads = [None if g is None else g * grad_loss.to(g.dtype) for g in grads]
        return (*grads, *(None,) * 9)


# --- composable: differentiable log-probs, logits recomputed in the backward ---------------------


class _ChunkedTokenLogProb(torch.autograd.Function):
    """$\\log\\pi_n$ (and optionally the entropy $H_n$) of `hidden @ weight.T + bias`, chunked over tokens."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, token_ids: Tensor, chunk_size: int,
                temperature: float, with_entropy: bool) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        ctx.set_materialize_grads(False)  # entropy is often logged only: no zero gradient to fold in
        ctx.device_type = hidden.device.type
        with torch.autocast(ctx.device_type, enabled=False):  # the math stays in at least fp32
            dtype = _compute_dtype(hidden, weight)
            weight_c, bias_c = weight.to(dtype), None if bias is None else bias.to(dtype)
            n_tokens = hidden.shape[0]
            log_prob = hidden.new_empty(n_tokens, dtype=dtype)
            log_z = torch.empty_like(log_prob)
            entropy = torch.empty_like(log_prob) if with_entropy else None
            buffer = hidden.new_empty((min(chunk_size, n_tokens), weight.shape[0]), dtype=dtype)
            for start in range(0, n_tokens, chunk_size):
                rows = slice(start, min(start + chunk_size, n_tokens))
                z = _chunk_logits(buffer, hidden[rows].to(dtype), weight_c, bias_c, temperature)
                target = z.gather(1, token_ids[rows, None]).squeeze(1)
                _, _, log_z[rows], chunk_entropy = _normalise_in_place(z, with_entropy)
                log_prob[rows] = target - log_z[rows]
                if chunk_entropy is not None:
                    entropy[rows] = chunk_entropy
        ctx.save_for_backward(hidden, weight, bias, token_ids, log_z, log_z if entropy is None else entropy)
        ctx.chunk_size, ctx.temperature, ctx.with_entropy = chunk_size, temperature, with_entropy
        return log_prob, entropy

    @staticmethod
    def backward(ctx, grad_log_prob: Tensor | None, grad_entropy: Tensor | None) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, token_ids, log_z, entropy = ctx.saved_tensors
        grad_entropy = grad_entropy if ctx.with_entropy else None
        if grad_log_prob is None and grad_entropy is None:
            return None, None, None, None, None, None, None
        with torch.autocast(ctx.device_type, enabled=False):
            dtype = log_z.dtype
            weight_c, bias_c = weight.to(dtype), None if bias is None else bias.to(dtype)
            grads = _new_grads(hidden, weight, bias is not None, ctx.needs_input_grad[:3], dtype)
            n_tokens, chunk_size = hidden.shape[0], ctx.chunk_size
            buffer = hidden.new_empty((min(chunk_size, n_tokens), weight.shape[0]), dtype=dtype)
            zero = log_z.new_zeros(())
            for start in range(0, n_tokens, chunk_size):
                rows = slice(start, min(start + chunk_size, n_tokens))
                hidden_c = hidden[rows].to(dtype)
                log_p = _chunk_logits(buffer, hidden_c, weight_c, bias_c, ctx.temperature).sub_(log_z[rows, None])
                g = zero.expand(log_p.shape[0]) if grad_log_prob is None else grad_log_prob[rows].to(dtype)
                if grad_entropy is None:
                    grad_z = _logit_grad_in_place(log_p.exp_(), token_ids[rows], g, ctx.temperature)
                else:  # dH/dz = -p (log p + H), added to the log-prob part
                    p = torch.exp(log_p)
                    entropy_part = log_p.add_(entropy[rows, None]).mul_(p).mul_(-grad_entropy[rows, None].to(dtype))
                    grad_z = _logit_grad_in_place(p, token_ids[rows], g, 1.0).add_(entropy_part)
                    grad_z = grad_z.div_(ctx.temperature) if ctx.temperature != 1.0 else grad_z
                    del p, entropy_part
                _accumulate_grads(grad_z, hidden_c, weight_c, rows, grads)
        return (*_grads_as_inputs(grads, hidden, weight, bias), None, None, None, None)


# --- public API ------------------------------------------------------------------------------------


def _check_lm_inputs(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, token_ids: Tensor, mask: Tensor | None
) -> tuple[torch.Size, Tensor | None]:
    """Validate the LM-head inputs; returns `token_ids`' shape and the boolean mask (`None`: all valid)."""
    for name, value in (("hidden", hidden), ("lm_head_weight", weight)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ValueError(f"{name} must be a floating torch.Tensor, got {getattr(value, 'dtype', type(value))}")
    if hidden.dim() not in (2, 3) or hidden.numel() == 0:
        raise ValueError(f"hidden must be a non-empty [N, H] or [B, T, H] tensor, got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"lm_head_weight must be [V, H] with H = hidden.shape[-1] = {hidden.shape[-1]}, "
            f"got shape {tuple(weight.shape)}"
        )
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        raise ValueError(f"lm_head_bias must be None or a [V] = [{weight.shape[0]}] tensor")
    if not isinstance(token_ids, Tensor) or token_ids.is_floating_point() or token_ids.is_complex():
        raise ValueError("token_ids must be an integer torch.Tensor")
    shape = hidden.shape[:-1]
    if token_ids.shape != shape:
        raise ValueError(
            f"token_ids with shape {tuple(token_ids.shape)} must have hidden's leading shape {tuple(shape)}"
        )
    valid = None
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        check_broadcasts_to("mask", mask, shape, "token_ids")
        valid = (mask != 0).expand(shape)
    ids = token_ids if valid is None else token_ids[valid]
    if ids.numel() and bool((ids < 0).any() | (ids >= weight.shape[0]).any()):
        raise ValueError(f"token_ids must lie in [0, {weight.shape[0]}) at unmasked positions")
    return shape, valid


def _check_options(chunk_size: int, temperature: float, with_entropy: bool) -> float:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if not isinstance(with_entropy, bool):
        raise ValueError(f"with_entropy must be a bool, got {with_entropy!r}")
    check_positive("temperature", temperature)
    return float(temperature)


def _rows(x: Tensor, valid: Tensor | None, *, features: bool = False) -> Tensor:
    """`[..., H]` (`features`) or `[...]` flattened to the rows of the valid positions."""
    flat = x.reshape(-1, x.shape[-1]) if features else x.reshape(-1)
    return flat if valid is None else flat[valid.reshape(-1)]


def _scatter(values: Tensor | None, valid: Tensor | None, shape: torch.Size) -> Tensor | None:
    """Rows of the valid positions back to `shape`, zeros where masked (differentiable, even with none valid)."""
    if values is None or valid is None:
        return None if values is None else values.view(shape)
    return values.new_zeros(shape).masked_scatter(valid, values)


def chunked_token_log_probs(
    hidden: Tensor,
    lm_head_weight: Tensor,
    lm_head_bias: Tensor | None,
    token_ids: Tensor,
    mask: Tensor | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    r"""Per-token $\log\pi(a_n)$ under the logits $(hW^\top + b)/T$, never materialising all of them.

    $$
    \log\pi_n = z_{n,a_n} - \log\textstyle\sum_v e^{z_{n,v}},\qquad
    H_n = -\textstyle\sum_v p_{n,v}\log p_{n,v},\qquad z_n = (h_n W^\top + b)/T.
    $$

    Differentiable w.r.t. `hidden`, `lm_head_weight` and `lm_head_bias` through both outputs
    ($\partial H_n/\partial z_{n,v} = -p_{n,v}(\log p_{n,v} + H_n)$); the backward recomputes the
    logits chunk by chunk. Use it when something other than one per-token objective consumes the
    log-probs; for a plain policy loss
    [`fused_linear_policy_loss`][gipo_plugins.fused.fused_linear_policy_loss] saves the recompute.

    Args:
        hidden: final hidden states $h$, `[N, H]` or `[B, T, H]` (any float dtype).
        lm_head_weight: $W$, `[V, H]`.
        lm_head_bias: $b$, `[V]`, or `None`.
        token_ids: taken tokens $a$, integers of shape `hidden.shape[:-1]`; only unmasked ones must
            lie in `[0, V)` (e.g. `-100` padding is fine where masked).
        mask: optional; non-zero marks valid tokens, broadcastable to `token_ids`. Masked tokens skip
            the LM head.
        chunk_size: tokens per chunk; the largest transient buffer holds `chunk_size` × $V$ values
            (two with `with_entropy`).
        temperature: $T > 0$ the logits are divided by (as the sampler did).
        with_entropy: also return the entropy $H_n$ of each token's distribution.

    Returns:
        `(log_prob, entropy)`: at least fp32, `token_ids`' shape, zeros at masked positions;
        `entropy` is `None` unless `with_entropy`.

    Raises:
        ValueError: naming the argument, for wrong ranks, dtypes or shapes, token ids outside the
            vocabulary at valid positions, a non-positive `chunk_size` or `temperature`.
    """
    shape, valid = _check_lm_inputs(hidden, lm_head_weight, lm_head_bias, token_ids, mask)
    temperature = _check_options(chunk_size, temperature, with_entropy)
    log_prob, entropy = _ChunkedTokenLogProb.apply(
        _rows(hidden, valid, features=True),
        lm_head_weight,
        lm_head_bias,
        _rows(token_ids, valid).long(),
        chunk_size,
        temperature,
        with_entropy,
    )
    return _scatter(log_prob, valid, shape), _scatter(entropy, valid, shape)


@dataclass(frozen=True)
class FusedPolicyLoss:
    """What [`fused_linear_policy_loss`][gipo_plugins.fused.fused_linear_policy_loss] returns.

    Attributes:
        loss: the scalar loss (differentiable w.r.t. the hidden states and the LM head).
        log_prob: detached $\\log\\pi_\\theta(a_n)$, at least fp32, `token_ids`' shape, zeros where
            masked (e.g. for logging or the next iteration's `old_log_prob`).
        entropy: detached per-token entropy when asked for, else `None`.
        result: the core objective evaluated on the detached `log_prob` with the same mask and
            reduction: the same `per_element`, `gate`, `grad_weight`, `log_ratio` and `metrics` as
            the unfused path (`result.loss` equals `loss` when no `token_weights` are given).
    """

    loss: Tensor
    log_prob: Tensor
    entropy: Tensor | None
    result: ObjectiveResult

    @property
    def metrics(self) -> dict[str, Tensor]:
        """The objective's utilization diagnostics (`result.metrics`)."""
        return self.result.metrics


def fused_linear_policy_loss(
    hidden: Tensor,
    lm_head_weight: Tensor,
    lm_head_bias: Tensor | None,
    token_ids: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    objective: PolicyObjective,
    token_weights: Tensor | None = None,
    reduction: str = "mean",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> FusedPolicyLoss:
    r"""A policy objective on an LM head's token log-probs, fused with the head, in one chunked pass.

    With $\log\pi_n = \log\mathrm{softmax}((h_n W^\top + b)/T)_{a_n}$ and the objective's
    per-token term (GIPO: $-\,r_n A_n\,\mathrm{sg}[w(\ell_n)]$, $\ell_n = \log\pi_n - \log\pi_{old,n}$),

    $$
    L = \frac{1}{M}\sum_{n\ \text{valid}} c_n\,\text{term}_n\ \ (\text{mean}),\qquad
    L = \sum_{n\ \text{valid}} c_n\,\text{term}_n\ \ (\text{sum}),
    $$

    with $M$ the number of valid tokens and $c_n$ the `token_weights` (default 1). Without weights
    this equals `objective(log_prob, old_log_prob, advantages, mask, reduction=reduction).loss` on
    materialised logits, and so do the gradients w.r.t. `hidden`, $W$ and $b$. Every TRL-style
    normalisation is a choice of $c_n$, e.g. per-sequence means:
    $c_{b,t} = 1/(B\,|\text{seq}_b|)$ with `reduction="sum"`.

    The objective is called on each chunk's log-probs (`reduction="none"`) and autograd gives
    $g_n = c_n\,\partial\text{term}_n/\partial\log\pi_n$, which becomes the chunk's logit
    gradient at once; the backward only scales the stored gradients. So the objective must be per
    token (token-level ratios). For sequence-level ratios or extra terms on the log-probs (KL,
    entropy), use [`chunked_token_log_probs`][gipo_plugins.fused.chunked_token_log_probs] and the
    objective directly.

    Args:
        hidden: final hidden states, `[N, H]` or `[B, T, H]`.
        lm_head_weight: LM head weight $W$, `[V, H]`.
        lm_head_bias: LM head bias `[V]` or `None`.
        token_ids: taken tokens, `hidden.shape[:-1]`.
        old_log_prob: behaviour log-probs, broadcastable to `token_ids`.
        advantages: $A$, broadcastable to `token_ids` (e.g. `[B, 1]`).
        mask: optional; non-zero marks valid tokens. Masked tokens skip the LM head.
        objective: the core objective, e.g. `PolicyObjective("gipo", sigma=0.5)`.
        token_weights: optional $c_n$, broadcastable to `token_ids`, finite where valid.
        reduction: `"mean"` (over valid tokens) or `"sum"`.
        chunk_size: tokens per chunk; the largest transient buffer holds `chunk_size` × $V$ values.
        temperature: $T > 0$ the logits are divided by.
        with_entropy: also return the (detached) per-token entropy.

    Returns:
        [`FusedPolicyLoss`][gipo_plugins.fused.FusedPolicyLoss]: loss, detached log-probs, the
        objective's result and metrics.

    Raises:
        ValueError: naming the argument: bad LM-head inputs (as `chunked_token_log_probs`), an
            unknown `reduction`, non-finite `token_weights`, an all-masked batch, and everything the
            objective rejects (shapes, NaN at valid positions).

    Examples:
        >>> out = fused_linear_policy_loss(h, lm_head.weight, None, ids, old_logp, adv[:, None], mask,
        ...                                objective=PolicyObjective("gipo"), chunk_size=1024)
        >>> out.loss.backward(); out.metrics["ess"]
    """
    shape, valid = _check_lm_inputs(hidden, lm_head_weight, lm_head_bias, token_ids, mask)
    temperature = _check_options(chunk_size, temperature, with_entropy)
    if not callable(objective):
        raise ValueError(f"objective must be a PolicyObjective (callable), got {type(objective).__name__}")
    if reduction not in FUSED_REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {FUSED_REDUCTIONS}")
    per_token = {"old_log_prob": old_log_prob, "advantages": advantages}
    if token_weights is not None:
        per_token["token_weights"] = token_weights
    for name, value in per_token.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        check_broadcasts_to(name, value, shape, "token_ids")
    flat = {name: _rows(value.detach().expand(shape), valid) for name, value in per_token.items()}
    n_valid = flat["advantages"].numel()
    if n_valid == 0:
        raise ValueError("mask has no valid element: every position is masked out")
    coefficients = flat.get("token_weights", hidden.new_ones(()).expand(n_valid)).float()
    if token_weights is not None and not bool(torch.isfinite(coefficients).all()):
        raise ValueError("token_weights contains NaN or inf at unmasked positions")
    if reduction == "mean":
        coefficients = coefficients / n_valid
    params = [hidden, lm_head_weight] + ([] if lm_head_bias is None else [lm_head_bias])
    needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
    loss, log_prob, entropy = _FusedLinearPolicyLoss.apply(
        _rows(hidden, valid, features=True),
        lm_head_weight,
        lm_head_bias,
        _rows(token_ids, valid).long(),
        flat["old_log_prob"],
        flat["advantages"],
        coefficients,
        objective,
        chunk_size,
        temperature,
        with_entropy,
        needs_grad,
    )
    log_prob = _scatter(log_prob, valid, shape)
    result = objective(log_prob, old_log_prob, advantages, mask, reduction=reduction)
    return FusedPolicyLoss(loss=loss, log_prob=log_prob, entropy=_scatter(entropy, valid, shape), result=result)
