"""Fused LM head + policy loss: equal to materialised logits (values, gradients, diagnostics), less memory."""

from __future__ import annotations

import json

import pytest
import torch

from gipo_plugins import PolicyObjective
from gipo_plugins.fused import chunked_token_log_probs, fused_linear_policy_loss

B, T, H, V = 3, 7, 16, 50  # N = 21 tokens: chunk sizes 4 and 5 do not divide it
OBJECTIVES = {
    "gipo": PolicyObjective("gipo", sigma=0.5, sigma_neg_ratio=0.5),
    "ppo_clip": PolicyObjective("ppo_clip", clip_epsilon=0.2),
    "sapo": PolicyObjective("sapo"),
}


def _problem(seed: int = 0, device: str = "cpu", bias: bool = True):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=gen).to(device).requires_grad_()
    weight = (torch.randn(V, H, generator=gen) / 2).to(device).requires_grad_()
    lm_bias = torch.randn(V, generator=gen).to(device).requires_grad_() if bias else None
    ids = torch.randint(0, V, (B, T), generator=gen).to(device)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 5:], mask[2, 1] = False, False
    mask = mask.to(device)
    ids = ids.masked_fill(~mask, -100)  # padding ids are fine where masked
    advantages = torch.randn(B, 1, generator=gen).to(device)
    with torch.no_grad():  # stale behaviour log-probs: ratios spread over and beyond every clip range
        shift = 0.6 * torch.randn(B, T, generator=gen).to(device)
        old = _naive_log_prob(hidden, weight, lm_bias, ids) + shift
    return hidden, weight, lm_bias, ids, mask, old, advantages


def _naive_log_prob(hidden, weight, bias, ids, temperature=1.0):
    logits = torch.nn.functional.linear(hidden, weight, bias) / temperature  # the full [B, T, V] logits
    return torch.log_softmax(logits, -1).gather(-1, ids.clamp(min=0)[..., None]).squeeze(-1)


def _params(hidden, weight, bias):
    return [hidden, weight] + ([] if bias is None else [bias])


def _assert_grads_close(loss, reference, params, tol=1e-5):
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    expected = torch.autograd.grad(reference, params, retain_graph=True)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(OBJECTIVES))
@pytest.mark.parametrize(
    ("chunk_size", "reduction", "temperature"), [(4, "mean", 1.0), (5, "sum", 0.7), (64, "mean", 1.3)]
)
def test_one_pass_loss_equals_materialised_logits(name, chunk_size, reduction, temperature):
    hidden, weight, bias, ids, mask, old, adv = _problem()
    objective = PolicyObjective(name)
    expected = objective(_naive_log_prob(hidden, weight, bias, ids, temperature), old, adv, mask, reduction=reduction)
    out = fused_linear_policy_loss(
        hidden, weight, bias, ids, old, adv, mask,
        objective=objective, chunk_size=chunk_size, temperature=temperature, reduction=reduction,
    )  # fmt: skip
    torch.testing.assert_close(out.loss, expected.loss, rtol=1e-5, atol=1e-5)
    _assert_grads_close(out.loss, expected.loss, _params(hidden, weight, bias))
    for key, value in expected.metrics.items():
        torch.testing.assert_close(out.metrics[key], value, rtol=1e-5, atol=1e-5, msg=key)
    torch.testing.assert_close(out.result.gate, expected.gate, rtol=1e-5, atol=1e-5)
    assert not out.log_prob.requires_grad and bool((out.log_prob[~mask] == 0).all())
    if name == "ppo_clip":  # the check has teeth: some tokens are clipped, so gradients differ from plain IS
        assert 0 < float(out.metrics["dead_fraction"]) < 1


@pytest.mark.parametrize("name", ["gipo", "sapo"])
@pytest.mark.parametrize("with_entropy", [False, True])
def test_chunked_log_probs_compose_with_the_objective(name, with_entropy):
    hidden, weight, bias, ids, mask, old, adv = _problem(seed=1)
    log_prob, entropy = chunked_token_log_probs(
        hidden, weight, bias, ids, mask, chunk_size=4, temperature=0.8, with_entropy=with_entropy
    )
    naive = _naive_log_prob(hidden, weight, bias, ids, 0.8)
    loss = PolicyObjective(name)(log_prob, old, adv, mask).loss
    expected = PolicyObjective(name)(naive, old, adv, mask).loss
    if with_entropy:  # an entropy bonus flows through the fused backward too
        logp_all = torch.log_softmax(torch.nn.functional.linear(hidden, weight, bias) / 0.8, -1)
        naive_entropy = -(logp_all.exp() * logp_all).sum(-1)
        torch.testing.assert_close(entropy[mask], naive_entropy[mask], rtol=1e-5, atol=1e-5)
        loss, expected = loss - 0.1 * entropy[mask].mean(), expected - 0.1 * naive_entropy[mask].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    _assert_grads_close(loss, expected, _params(hidden, weight, bias))


def test_exact_gradients_in_fp64():
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, generator=gen, requires_grad=True)
    ids = torch.randint(0, 9, (5,), generator=gen)

    def both(h, w, b):
        return chunked_token_log_probs(h, w, b, ids, chunk_size=2, temperature=0.9, with_entropy=True)

    assert torch.autograd.gradcheck(both, (hidden, weight, bias))


def test_token_weights_give_any_aggregation():
    hidden, weight, bias, ids, mask, old, adv = _problem(seed=3)
    lengths = mask.sum(-1, keepdim=True)
    per_sequence_mean = (1.0 / (B * lengths)).expand(B, T)  # TRL's "grpo" normalisation
    objective = PolicyObjective("gipo")
    terms = objective(_naive_log_prob(hidden, weight, bias, ids), old, adv, mask, reduction="none").loss
    expected = (terms * per_sequence_mean).sum()
    out = fused_linear_policy_loss(
        hidden.reshape(B * T, H),
        weight,
        bias,
        ids.reshape(-1),
        old.reshape(-1),
        adv.expand(B, T).reshape(-1),
        mask.reshape(-1),
        objective=objective,
        token_weights=per_sequence_mean.reshape(-1),
        reduction="sum",
        chunk_size=6,
    )  # fmt: skip  ([N, H] inputs)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    _assert_grads_close(out.loss, expected, _params(hidden, weight, bias))


def test_incoming_gradient_scales_and_no_grad_mode():
    hidden, weight, _, ids, mask, old, adv = _problem(seed=4, bias=False)
    objective = PolicyObjective("gipo")
    expected = objective(_naive_log_prob(hidden, weight, None, ids), old, adv, mask).loss * 3.0
    out = fused_linear_policy_loss(hidden, weight, None, ids, old, adv, mask, objective=objective, chunk_size=8)
    _assert_grads_close(out.loss * 3.0, expected, [hidden, weight])
    with torch.no_grad():
        quiet = fused_linear_policy_loss(hidden, weight, None, ids, old, adv, mask, objective=objective)
    assert not quiet.loss.requires_grad
    torch.testing.assert_close(quiet.loss, out.loss)


def test_half_precision_is_computed_in_fp32_under_autocast():
    hidden, weight, bias, ids, mask, old, adv = _problem(seed=5)
    half = [x.detach().bfloat16().requires_grad_() for x in (hidden, weight, bias)]
    reference = [x.detach().float().requires_grad_() for x in half]  # the same values, fp32 math
    expected = PolicyObjective("gipo")(_naive_log_prob(*reference, ids), old, adv, mask).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_linear_policy_loss(*half, ids, old, adv, mask, objective=PolicyObjective("gipo"), chunk_size=4)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.loss, half)
    for got, want in zip(grads, torch.autograd.grad(expected, reference), strict=True):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-3)  # only the final bf16 rounding


def _peak_cpu_bytes(fn, trace_path) -> int:
    """Peak of the bytes the torch CPU allocator handed out during `fn()` and had not freed yet.

    From the profiler's memory events (one per allocation and free, in time order).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    prof.export_chrome_trace(str(trace_path))
    events = [e for e in json.loads(trace_path.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e["ts"]):
        live += event["args"]["Bytes"]
        peak = max(peak, live)
    return peak


def test_fused_loss_needs_less_memory_than_materialised_logits(tmp_path):
    gen = torch.Generator().manual_seed(6)
    n, hidden_size, vocab = 512, 32, 4096
    hidden = torch.randn(n, hidden_size, generator=gen, requires_grad=True)
    weight = torch.randn(vocab, hidden_size, generator=gen, requires_grad=True)
    ids, old, adv = torch.randint(0, vocab, (n,), generator=gen), torch.full((n,), -8.0), torch.randn(n, generator=gen)
    objective = PolicyObjective("gipo")

    def unfused():
        objective(_naive_log_prob(hidden, weight, None, ids), old, adv).loss.backward()

    def fused():
        fused_linear_policy_loss(
            hidden, weight, None, ids, old, adv, objective=objective, chunk_size=64
        ).loss.backward()

    logits_bytes = n * vocab * 4
    assert _peak_cpu_bytes(unfused, tmp_path / "unfused.json") > 2 * logits_bytes  # logits, log-softmax, grads
    assert _peak_cpu_bytes(fused, tmp_path / "fused.json") < 0.5 * logits_bytes  # a 64-token chunk + dW


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("hidden", {"hidden": torch.zeros(4)}),
        ("hidden", {"hidden": torch.zeros(3, 4, dtype=torch.long)}),
        ("lm_head_weight", {"lm_head_weight": torch.zeros(V, H + 1)}),
        ("lm_head_bias", {"lm_head_bias": torch.zeros(V + 1)}),
        ("token_ids", {"token_ids": torch.zeros(B, T)}),
        ("token_ids", {"token_ids": torch.zeros(B, T + 1, dtype=torch.long)}),
        ("token_ids", {"token_ids": torch.full((B, T), V)}),
        ("mask", {"mask": torch.ones(B, T + 1)}),
        ("mask", {"mask": torch.zeros(B, T)}),
        ("advantages", {"advantages": torch.zeros(B + 1, 1)}),
        ("token_weights", {"token_weights": torch.full((B, T), float("nan"))}),
        ("chunk_size", {"chunk_size": 0}),
        ("chunk_size", {"chunk_size": 2.5}),
        ("temperature", {"temperature": 0.0}),
        ("reduction", {"reduction": "none"}),
        ("objective", {"objective": "gipo"}),
    ],
)
def test_bad_input_names_the_argument(name, change):
    hidden, weight, bias, ids, mask, old, adv = _problem()
    args = {"hidden": hidden, "lm_head_weight": weight, "lm_head_bias": bias, "token_ids": ids, "old_log_prob": old,
            "advantages": adv, "mask": mask, "objective": PolicyObjective("gipo")} | change  # fmt: skip
    with pytest.raises(ValueError, match=name):
        fused_linear_policy_loss(**args)


@pytest.mark.gpu
def test_on_cuda_equal_and_lighter():
    hidden, weight, bias, ids, mask, old, adv = _problem(device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    objective = PolicyObjective("gipo")
    expected = objective(_naive_log_prob(hidden, weight, bias, ids), old, adv, mask).loss
    out = fused_linear_policy_loss(hidden, weight, bias, ids, old, adv, mask, objective=objective, chunk_size=5)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    _assert_grads_close(out.loss, expected, _params(hidden, weight, bias))

    n, hidden_size, vocab = 4096, 1024, 32768  # the benchmark's size
    hidden = torch.randn(n, hidden_size, device="cuda", requires_grad=True)
    weight = (torch.randn(vocab, hidden_size, device="cuda") / 32).requires_grad_()
    ids = torch.randint(0, vocab, (n,), device="cuda")
    old, adv = torch.full((n,), -10.0, device="cuda"), torch.randn(n, device="cuda")
    peaks = {}
    for fused in (False, True):
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        if fused:
            loss = fused_linear_policy_loss(hidden, weight, None, ids, old, adv, objective=objective).loss
        else:
            loss = objective(_naive_log_prob(hidden, weight, None, ids), old, adv).loss
        loss.backward()
        torch.cuda.synchronize()
        peaks[fused] = torch.cuda.max_memory_allocated() - start
    print(f"CUDA peak above inputs: unfused {peaks[False] / 2**20:.0f} MiB, fused {peaks[True] / 2**20:.0f} MiB")
    assert peaks[True] <= 0.25 * peaks[False]
