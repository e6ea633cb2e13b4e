r"""Fused LM head and policy loss: token log-probs of $hW^\top + b$ without the (tokens × vocab) logits.

For a language-model policy the logits $z = (hW^\top + b)/T$ of $N$ tokens over a vocabulary of $V$
dominate the memory of the loss (plus their log-softmax and its gradient: several $N \times V$
buffers). Every policy term here depends on the logits only through the log-probability of the
taken token $a_n$,

$$
\log\pi_n = z_{n,a_n} - \log\textstyle\sum_v e^{z_{n,v}},\qquad
\frac{\partial\log\pi_n}{\partial z_{n,v}} = \mathbb{1}[v = a_n] - p_{n,v},
$$

so the LM head is fused with the log-softmax in [`chunked_token_log_probs`][gipo_plugins.fused.chunked_token_log_probs]:
tokens are processed in chunks of `chunk_size`; the forward keeps only $\log\pi_n$ and
$\log Z_n$ per token, and the backward recomputes each chunk's logits and turns them, in place, into
$\partial L/\partial z = g_n(\mathbb{1}[v = a_n] - p_{n,v})/T$ with $g_n = \partial L/\partial\log\pi_n$,
accumulating $\partial L/\partial h$, $\partial L/\partial W$ and $\partial L/\partial b$. The peak
extra memory is about `chunk_size` $\times V$ fp32 values instead of several $N \times V$ buffers.

[`fused_linear_policy_loss`][gipo_plugins.fused.fused_linear_policy_loss] feeds those log-probs to the
core objective ([`PolicyObjective`][gipo_plugins.objectives.PolicyObjective]): the policy term, its
reduction and its diagnostics are the objective's own, and autograd through it supplies $g_n$ (a
vector of $N$ numbers) to the fused backward. Because the term is element-wise in $\log\pi_n$ — and
batch normalisations are linear — nothing about the $N \times V$ logits is needed beyond $g$, so
evaluating it on all $N$ log-probs at once is exact and costs $O(N)$.

Numerics: logits, log-softmax and the gradient accumulators are at least fp32 whatever the input
dtype and any autocast (half-precision weights are upcast once per pass, a transient copy the size of
$W$; fp64 stays fp64); gradients are returned in the inputs' dtypes. The backward costs one extra
$N \times H \times V$ matrix product (the recomputed logits) compared with materialised logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gipo_plugins._checks import check_broadcasts_to, check_positive
from gipo_plugins.objectives import ObjectiveResult, PolicyObjective

DEFAULT_CHUNK_SIZE = 512
"""Tokens per chunk: the largest transient buffer is about `chunk_size` × vocab fp32 values."""


class _ChunkedTokenLogProb(torch.autograd.Function):
    """$\\log\\pi_n$ (and optionally the entropy $H_n$) of `hidden @ weight.T + bias`, chunked over tokens."""

    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,  # [N, H]
        weight: Tensor,  # [V, H]
        bias: Tensor | None,  # [V]
        token_ids: Tensor,  # [N], int64
        chunk_size: int,
        temperature: float,
        with_entropy: bool,
    ) -> tuple[Tensor, Tensor | None]:
        ctx.set_materialize_grads(False)  # entropy is often logged only: no zero gradient to fold in
        ctx.device_type = hidden.device.type
        with torch.autocast(ctx.device_type, enabled=False):  # the math stays in at least fp32
            return _forward(ctx, hidden, weight, bias, token_ids, chunk_size, temperature, with_entropy)

    @staticmethod
    def backward(ctx, grad_log_prob: Tensor | None, grad_entropy: Tensor | None):  # type: ignore[override]
        with torch.autocast(ctx.device_type, enabled=False):
            return _backward(ctx, grad_log_prob, grad_entropy)


def _forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, token_ids: Tensor, chunk_size: int,
             temperature: float, with_entropy: bool) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """Per chunk: logits into one reused buffer, then target logit, $\\log Z$ (and $H$); nothing $N \\times V$ kept."""
    n_tokens, dtype = hidden.shape[0], _compute_dtype(hidden, weight)
    weight_c = weight.to(dtype)
    bias_c = None if bias is None else bias.to(dtype)
    log_prob = hidden.new_empty(n_tokens, dtype=dtype)
    log_z = torch.empty_like(log_prob)
    entropy = torch.empty_like(log_prob) if with_entropy else None
    buffer = hidden.new_empty((min(chunk_size, n_tokens), weight.shape[0]), dtype=dtype)
    for start in range(0, n_tokens, chunk_size):
        end = min(start + chunk_size, n_tokens)
        z = _chunk_logits(buffer, hidden[start:end], weight_c, bias_c, temperature)
        target = z.gather(1, token_ids[start:end, None]).squeeze(1)
        peak = z.amax(1)
        y = z.sub_(peak[:, None])  # z - max, in place
        if with_entropy:  # H = log s - sum(e^y y) / s, with s = sum(e^y)
            e = torch.exp(y)
            s = e.sum(1)
            entropy[start:end] = s.log() - torch.bmm(e[:, None, :], y[:, :, None]).view(-1) / s
        else:
            s = y.exp_().sum(1)
        log_z[start:end] = peak + s.log()
        log_prob[start:end] = target - log_z[start:end]
    ctx.save_for_backward(hidden, weight, bias, token_ids, log_z, log_z if entropy is None else entropy)
    ctx.chunk_size, ctx.temperature, ctx.with_entropy = chunk_size, temperature, with_entropy
    return log_prob, entropy


def _backward(ctx, grad_log_prob: Tensor | None, grad_entropy: Tensor | None) -> tuple[Tensor | None, ...]:
    """Per chunk: recompute the logits and turn them in place into $\\partial L/\\partial z$, then the GEMMs."""
    hidden, weight, bias, token_ids, log_z, entropy = ctx.saved_tensors
    needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
    if not ctx.with_entropy:
        grad_entropy = None
    if grad_log_prob is None and grad_entropy is None:
        return None, None, None, None, None, None, None
    n_tokens, chunk_size, temperature = hidden.shape[0], ctx.chunk_size, ctx.temperature
    dtype = log_z.dtype
    weight_c = weight.to(dtype)
    bias_c = None if bias is None else bias.to(dtype)
    grad_hidden = torch.empty(hidden.shape, dtype=dtype, device=hidden.device) if needs_hidden else None
    grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if needs_weight else None
    grad_bias = torch.zeros(weight.shape[0], dtype=dtype, device=weight.device) if needs_bias else None
    buffer = hidden.new_empty((min(chunk_size, n_tokens), weight.shape[0]), dtype=dtype)
    for start in range(0, n_tokens, chunk_size):
        end = min(start + chunk_size, n_tokens)
        hidden_c = hidden[start:end].to(dtype)
        log_p = _chunk_logits(buffer, hidden_c, weight_c, bias_c, temperature).sub_(log_z[start:end, None])
        if grad_entropy is None:  # dL/dz = g (1[v = a] - p): one buffer, in place
            grad_z = log_p.exp_().mul_(-grad_log_prob[start:end, None].to(dtype))
        else:  # dH/dz = -p (log p + H)
            p = torch.exp(log_p)
            grad_z = log_p.add_(entropy[start:end, None]).mul_(p).mul_(-grad_entropy[start:end, None].to(dtype))
            if grad_log_prob is not None:
                grad_z.addcmul_(p, grad_log_prob[start:end, None].to(dtype), value=-1.0)
            del p
        if grad_log_prob is not None:
            grad_z.scatter_add_(1, token_ids[start:end, None], grad_log_prob[start:end, None].to(dtype))
        if temperature != 1.0:
            grad_z.div_(temperature)
        if grad_hidden is not None:
            torch.mm(grad_z, weight_c, out=grad_hidden[start:end])
        if grad_weight is not None:
            grad_weight.addmm_(grad_z.t(), hidden_c)
        if grad_bias is not None:
            grad_bias += grad_z.sum(0)
    return (
        None if grad_hidden is None else grad_hidden.to(hidden.dtype),
        None if grad_weight is None else grad_weight.to(weight.dtype),
        None if grad_bias is None else grad_bias.to(bias.dtype),
        None,
        None,
        None,
        None,
    )


def _chunk_logits(
    buffer: Tensor, hidden: Tensor, weight_c: Tensor, bias_c: Tensor | None, temperature: float
) -> Tensor:
    """$(hW^\\top + b)/T$ of one chunk in `buffer`'s dtype, written into its first rows."""
    z = buffer[: hidden.shape[0]]
    torch.mm(hidden.to(buffer.dtype), weight_c.t(), out=z)
    if bias_c is not None:
        z.add_(bias_c)
    if temperature != 1.0:
        z.div_(temperature)
    return z


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    """At least fp32: half-precision inputs are computed in fp32, fp64 stays fp64."""
    return torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


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

    Differentiable w.r.t. `hidden`, `lm_head_weight` and `lm_head_bias` (through both outputs); the
    backward recomputes the logits chunk by chunk. Only unmasked tokens go through the LM head.

    Args:
        hidden: final hidden states $h$, `[N, H]` or `[B, T, H]` (any float dtype; math in fp32).
        lm_head_weight: $W$, `[V, H]`.
        lm_head_bias: $b$, `[V]`, or `None`.
        token_ids: taken tokens $a$, integers of shape `hidden.shape[:-1]`; only unmasked ones must
            lie in `[0, V)` (e.g. `-100` padding is fine where masked).
        mask: optional; non-zero marks valid tokens, broadcastable to `token_ids`.
        chunk_size: tokens per chunk; the largest transient buffer holds `chunk_size` × $V$ fp32
            values (two with `with_entropy`).
        temperature: $T > 0$ the logits are divided by (as the sampler did).
        with_entropy: also return the entropy $H_n$ of each token's distribution.

    Returns:
        `(log_prob, entropy)`: fp32, `token_ids`' shape, zeros at masked positions; `entropy` is
        `None` unless `with_entropy`.

    Raises:
        ValueError: naming the argument, for wrong ranks, dtypes or shapes, token ids outside the
            vocabulary at valid positions, a non-positive `chunk_size` or `temperature`.
    """
    shape, valid = _check_lm_inputs(hidden, lm_head_weight, lm_head_bias, token_ids, mask)
    chunk_size = _check_chunk_size(chunk_size)
    temperature = check_positive("temperature", temperature)
    if not isinstance(with_entropy, bool):
        raise ValueError(f"with_entropy must be a bool, got {with_entropy!r}")
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_ids = token_ids.reshape(-1)
    if valid is not None:
        flat_valid = valid.reshape(-1)
        flat_hidden, flat_ids = flat_hidden[flat_valid], flat_ids[flat_valid]
    log_prob, entropy = _ChunkedTokenLogProb.apply(
        flat_hidden, lm_head_weight, lm_head_bias, flat_ids.long(), chunk_size, temperature, with_entropy
    )
    if valid is None:
        return log_prob.view(shape), None if entropy is None else entropy.view(shape)
    return _scatter(log_prob, valid), None if entropy is None else _scatter(entropy, valid)


def _scatter(values: Tensor, valid: Tensor) -> Tensor:
    """`values` of the valid positions into zeros of `valid`'s shape (differentiable, even with none valid)."""
    return values.new_zeros(valid.shape).masked_scatter(valid, values)


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


@dataclass(frozen=True)
class FusedPolicyLoss:
    """What [`fused_linear_policy_loss`][gipo_plugins.fused.fused_linear_policy_loss] returns.

    Attributes:
        loss: the objective's reduced loss (as `ObjectiveResult.loss`).
        log_prob: $\\log\\pi_\\theta(a_n)$, fp32, `token_ids`' shape, zeros where masked. Still
            differentiable: a KL or entropy term built on it joins the same backward pass.
        entropy: per-token entropy (differentiable) when asked for, else `None`.
        result: the core objective's full [`ObjectiveResult`][gipo_plugins.objectives.ObjectiveResult]
            (`per_element`, `gate`, `grad_weight`, `log_ratio`, `mask`, `metrics`).
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
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    temperature: float = 1.0,
    reduction: str = "mean",
    with_entropy: bool = False,
) -> FusedPolicyLoss:
    r"""A policy objective on an LM head's token log-probs, without the (tokens × vocab) logits.

    Equals `objective(log_softmax((hidden @ W.T + b) / T).gather(token_ids), old_log_prob,
    advantages, mask, reduction=reduction)` — loss, gradients w.r.t. `hidden`, $W$ and $b$, and
    diagnostics — with the memory of
    [`chunked_token_log_probs`][gipo_plugins.fused.chunked_token_log_probs]. For GIPO the term is
    $-\,r\,A\,\mathrm{sg}[w(\ell)]$ with $\ell = \log\pi_\theta - \log\pi_{old}$; every formula lives
    in the objective, called once on the $N$ log-probs.

    Any aggregation: with `reduction="none"` the per-token terms come back differentiable
    (`result.per_element`), to be weighted and summed by the caller (e.g. per-sequence means).

    Args:
        hidden: final hidden states, `[N, H]` or `[B, T, H]`.
        lm_head_weight: LM head weight $W$, `[V, H]`.
        lm_head_bias: LM head bias `[V]` or `None`.
        token_ids: taken tokens, `hidden.shape[:-1]`.
        old_log_prob: behaviour log-probs, broadcastable to `token_ids`.
        advantages: $A$, broadcastable to `token_ids` (e.g. `[B, 1]`).
        mask: optional; non-zero marks valid tokens.
        objective: the core objective, e.g. `PolicyObjective("gipo", sigma=0.5)`.
        chunk_size: tokens per chunk (memory ≈ `chunk_size` × $V$ fp32 values).
        temperature: the logits are divided by $T$.
        reduction: the objective's `"mean"` (masked), `"sum"` or `"none"`.
        with_entropy: also return the per-token entropy.

    Returns:
        [`FusedPolicyLoss`][gipo_plugins.fused.FusedPolicyLoss].

    Raises:
        ValueError: naming the argument, for bad LM-head inputs (see `chunked_token_log_probs`) and
            everything the objective rejects (shapes, NaN at valid positions, all-masked batches).

    Example:
        >>> out = fused_linear_policy_loss(h, lm_head.weight, None, ids, old_logp, adv[:, None], mask,
        ...                                objective=PolicyObjective("gipo"), chunk_size=1024)
        >>> out.loss.backward(); out.metrics["ess"]
    """
    if not callable(objective):
        raise ValueError(f"objective must be a PolicyObjective (callable), got {type(objective).__name__}")
    log_prob, entropy = chunked_token_log_probs(
        hidden,
        lm_head_weight,
        lm_head_bias,
        token_ids,
        mask,
        chunk_size=chunk_size,
        temperature=temperature,
        with_entropy=with_entropy,
    )
    result = objective(log_prob, old_log_prob, advantages, mask, reduction=reduction)
    return FusedPolicyLoss(loss=result.loss, log_prob=log_prob, entropy=entropy, result=result)
