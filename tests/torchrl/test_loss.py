"""GIPOLoss against ClipPPOLoss: the API behaviours TorchRL's own ClipPPOLoss tests check, plus GIPO's."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import CompositeDistribution, TensorDictModule, set_composite_lp_aggregate
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import IndependentNormal, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators
from torchrl_helpers import ACT, OBS, make_actor, make_batch, make_critic

from gipo_plugins.diagnostics import METRIC_KEYS
from gipo_plugins.torchrl import GIPOLoss

LOSS_KEYS = ("loss_objective", "loss_critic", "loss_entropy")


def _pair(**kwargs):
    actor, critic = make_actor(), make_critic()
    return GIPOLoss(actor, critic, **kwargs), ClipPPOLoss(actor, critic, **kwargs_without_gipo(kwargs))


def kwargs_without_gipo(kwargs):
    return {k: v for k, v in kwargs.items() if k not in {"sigma", "sigma_neg_ratio", "kernel", "objective", "kl_coeff"}}


def _actor_grads(loss_module, td, key="loss_objective"):
    loss_module.zero_grad()
    loss_module(td.clone())[key].backward()
    return [p.grad.clone() if p.grad is not None else None for p in loss_module.actor_network_params.values(True, True)]


def _stale_batch(loss_module, seed=3, shift=3.0):
    """Behaviour log-probs from a policy far from the current one: the PPO ratio is clipped everywhere."""
    td = make_batch(make_actor(seed=0), loss_module.tensor_keys.sample_log_prob)
    key = loss_module.tensor_keys.sample_log_prob
    td.set(key, td.get(key) - shift * torch.sign(td.get("advantage").squeeze(-1)))
    return td


def test_out_keys_extend_clip_ppo_and_are_all_produced():
    gipo, ppo = _pair()
    assert gipo.out_keys[: len(ppo.out_keys)] == ppo.out_keys
    assert set(METRIC_KEYS) <= set(gipo.out_keys)
    out = gipo(make_batch(make_actor(), gipo.tensor_keys.sample_log_prob))
    assert set(gipo.out_keys) <= set(out.keys())
    assert "kl" in GIPOLoss(make_actor(), make_critic(), kl_coeff=0.1).out_keys


def test_is_a_clip_ppo_loss_with_the_same_in_keys():
    gipo, ppo = _pair()
    assert isinstance(gipo, ClipPPOLoss)
    assert sorted(map(str, gipo.in_keys)) == sorted(map(str, ppo.in_keys))


def test_equals_clip_ppo_at_ratio_one():
    gipo, ppo = _pair(entropy_coeff=0.01)
    td = make_batch(make_actor(), gipo.tensor_keys.sample_log_prob)
    out_g, out_p = gipo(td.clone()), ppo(td.clone())
    for key in (*LOSS_KEYS, "ESS", "clip_fraction", "kl_approx", "max_ratio", "mean_ratio"):
        torch.testing.assert_close(out_g[key], out_p[key], msg=key)
    for g, p in zip(_actor_grads(gipo, td), _actor_grads(ppo, td), strict=True):
        torch.testing.assert_close(g, p)


def test_objective_ppo_clip_equals_clip_ppo_on_stale_data():
    gipo, ppo = _pair(objective="ppo_clip", clip_epsilon=(0.2, 0.28))
    td = _stale_batch(gipo, shift=0.15)
    torch.testing.assert_close(gipo(td.clone())["loss_objective"], ppo(td.clone())["loss_objective"])
    for g, p in zip(_actor_grads(gipo, td), _actor_grads(ppo, td), strict=True):
        torch.testing.assert_close(g, p)


def test_stale_batch_keeps_gradient_where_clip_ppo_is_dead():
    gipo, ppo = _pair()
    td = _stale_batch(gipo)
    ppo_grads = _actor_grads(ppo, td)
    assert all(g is None or g.abs().max() == 0 for g in ppo_grads)
    gipo_grads = _actor_grads(gipo, td)
    assert sum(g.abs().sum() for g in gipo_grads if g is not None) > 0
    out = gipo(td.clone())
    assert out["dead_fraction"] == 0
    assert GIPOLoss(make_actor(), make_critic(), objective="ppo_clip")(td.clone())["dead_fraction"] == 1


def test_set_keys():
    gipo = GIPOLoss(make_actor(), make_critic())
    td = make_batch(make_actor(), gipo.tensor_keys.sample_log_prob)
    reference = gipo(td.clone())["loss_objective"]
    gipo.set_keys(advantage="adv2", value_target="vt2", sample_log_prob="lp2")
    renamed = td.rename_key_("advantage", "adv2").rename_key_("value_target", "vt2")
    renamed = renamed.rename_key_(ClipPPOLoss(make_actor(), make_critic()).tensor_keys.sample_log_prob, "lp2")
    torch.testing.assert_close(gipo(renamed)["loss_objective"], reference)
    assert "lp2" in gipo.in_keys


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reduction_shapes_match_clip_ppo(reduction):
    gipo, ppo = _pair(reduction=reduction)
    td = make_batch(make_actor(), gipo.tensor_keys.sample_log_prob)
    out_g, out_p = gipo(td.clone()), ppo(td.clone())
    for key in LOSS_KEYS:
        assert out_g[key].shape == out_p[key].shape, key
        torch.testing.assert_close(out_g[key], out_p[key])


def test_tuple_outputs_with_keyword_call():
    gipo = GIPOLoss(make_actor(), make_critic())
    td = make_batch(make_actor(), gipo.tensor_keys.sample_log_prob)
    kwargs = {k if isinstance(k, str) else "_".join(k): td.get(k) for k in gipo.in_keys if k in td.keys(True, True)}
    outputs = gipo(**kwargs)
    assert isinstance(outputs, tuple) and len(outputs) == len(gipo.out_keys)
    as_td = gipo(td.select(*gipo.in_keys, strict=False))  # the same inputs: GAE computes the advantage
    for key, value in zip(gipo.out_keys, outputs, strict=True):
        torch.testing.assert_close(value, as_td[key], msg=key)
    gipo.select_out_keys("loss_objective", "dead_fraction")
    assert len(gipo(**kwargs)) == 2


def test_separate_actor_and_critic_gradients():
    gipo = GIPOLoss(make_actor(), make_critic(), separate_losses=True)
    td = make_batch(make_actor(), gipo.tensor_keys.sample_log_prob)
    out = gipo(_stale_batch(gipo, shift=0.5))
    out["loss_objective"].backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in gipo.critic_network_params.values(True, True))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gipo.actor_network_params.values(True, True))
    gipo.zero_grad()
    gipo(td)["loss_critic"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in gipo.actor_network_params.values(True, True))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gipo.critic_network_params.values(True, True))


def test_state_dict_round_trip_and_schedulable_buffers():
    gipo = GIPOLoss(make_actor(), make_critic(), sigma=0.7, kl_coeff=0.05)
    gipo.sigma = 0.3  # TorchRL's scalar assignment to a schedulable buffer: in-place
    gipo.kl_coeff = 0.2
    assert isinstance(gipo.sigma, torch.Tensor) and gipo.sigma.item() == pytest.approx(0.3)
    state = gipo.state_dict()
    assert "sigma" in state and "kl_coeff" in state
    fresh = GIPOLoss(make_actor(seed=5), make_critic(seed=6), sigma=1.0, kl_coeff=0.0)
    fresh.load_state_dict(state)
    assert fresh.sigma.item() == pytest.approx(0.3) and fresh.kl_coeff.item() == pytest.approx(0.2)
    td = _stale_batch(gipo, shift=0.5)
    torch.testing.assert_close(fresh(td.clone())["loss_objective"], gipo(td.clone())["loss_objective"])


def test_sigma_buffer_changes_the_weight():
    gipo = GIPOLoss(make_actor(), make_critic())
    td = _stale_batch(gipo, shift=1.0)
    wide = gipo(td.clone())["trust_weight_mean"]
    gipo.sigma = 0.2
    assert gipo(td.clone())["trust_weight_mean"] < wide
    with pytest.raises(ValueError, match="sigma"):  # a scheduler's bad value fails where it is set
        gipo.sigma = -1.0
    assert gipo.sigma.item() == pytest.approx(0.2)


def test_kl_penalty_is_folded_into_loss_objective():
    td = _stale_batch(GIPOLoss(make_actor(), make_critic()), shift=0.5)
    plain = GIPOLoss(make_actor(), make_critic())(td.clone())
    with_kl = GIPOLoss(make_actor(), make_critic(), kl_coeff=0.5)(td.clone())
    assert with_kl["kl"] > 0
    torch.testing.assert_close(with_kl["loss_objective"], plain["loss_objective"] + 0.5 * with_kl["kl"])


@pytest.mark.parametrize(
    "estimator", [ValueEstimators.GAE, ValueEstimators.TD0, ValueEstimators.TD1, ValueEstimators.TDLambda]
)
def test_value_estimators_match_clip_ppo(estimator):
    gipo, ppo = _pair()
    kwargs = {"gamma": 0.9, "lmbda": 0.95} if estimator in (ValueEstimators.GAE, ValueEstimators.TDLambda) else {}
    gipo.make_value_estimator(estimator, gamma=0.9, **{k: v for k, v in kwargs.items() if k != "gamma"})
    ppo.make_value_estimator(estimator, gamma=0.9, **{k: v for k, v in kwargs.items() if k != "gamma"})
    td = make_batch(make_actor(), gipo.tensor_keys.sample_log_prob, time=8).exclude("advantage", "value_target")
    out_g, out_p = gipo(td.clone()), ppo(td.clone())
    for key in ("loss_objective", "loss_critic"):
        torch.testing.assert_close(out_g[key], out_p[key], msg=key)


def test_loss_mask_is_respected():
    gipo = GIPOLoss(make_actor(), make_critic())
    td = _stale_batch(gipo, shift=0.7)
    mask = torch.arange(td.shape[0]) % 3 != 0
    td.set(("collector", "mask"), mask)
    masked = gipo(td.clone())
    subset = gipo(td[mask].exclude(("collector", "mask")))
    for key in ("loss_objective", "dead_fraction", "ess", "trust_weight_mean", "log_ratio_abs_mean"):
        torch.testing.assert_close(masked[key], subset[key], msg=key)
    td.set(("collector", "mask"), torch.zeros_like(mask))
    with pytest.raises(ValueError, match="mask"):
        gipo(td)


def test_functional_false():
    gipo = GIPOLoss(make_actor(), make_critic(), functional=False)
    td = _stale_batch(gipo, shift=0.5)
    out = gipo(td)
    (out["loss_objective"] + out["loss_critic"]).backward()
    assert any(p.grad is not None for p in gipo.actor_network.parameters())


def test_bad_gipo_arguments_raise_value_error():
    for kwargs, name in (
        ({"sigma": 0.0}, "sigma"),
        ({"sigma_neg_ratio": -1.0}, "sigma_neg_ratio"),
        ({"kernel": "box"}, "kernel"),
        ({"objective": "trpo"}, "objective"),
        ({"kl_coeff": -0.1}, "kl_coeff"),
    ):
        with pytest.raises(ValueError, match=name):
            GIPOLoss(make_actor(), make_critic(), **kwargs)


def test_torch_compile_fullgraph():
    gipo = GIPOLoss(make_actor(), make_critic(), functional=False, entropy_bonus=False)
    td = _stale_batch(gipo, shift=0.5)
    eager = gipo(td.clone())
    compiled = torch.compile(gipo, fullgraph=True)
    out = compiled(td.clone())
    for key in ("loss_objective", "loss_critic", "ess", "dead_fraction"):
        torch.testing.assert_close(out[key], eager[key], msg=key)


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(OBS, 2 * ACT + 4)

    def forward(self, obs):
        out = self.linear(obs)
        return out[..., :ACT], nn.functional.softplus(out[..., ACT : 2 * ACT]) + 1e-3, out[..., 2 * ACT :]


def _composite_actor(seed=0):
    torch.manual_seed(seed)
    module = TensorDictModule(
        _TwoHeads(),
        in_keys=["observation"],
        out_keys=[("params", "move", "loc"), ("params", "move", "scale"), ("params", "grip", "logits")],
    )
    return ProbabilisticActor(
        module,
        in_keys=["params"],
        distribution_class=CompositeDistribution,
        distribution_kwargs={
            "distribution_map": {"move": IndependentNormal, "grip": torch.distributions.Categorical},
            "name_map": {"move": ("action", "move"), "grip": ("action", "grip")},
        },
        return_log_prob=True,
    )


def test_composite_action_distribution():
    with set_composite_lp_aggregate(False):
        actor = _composite_actor()
        gipo = GIPOLoss(actor, make_critic(), objective="ppo_clip", entropy_bonus=False)
        ppo = ClipPPOLoss(actor, make_critic(), entropy_bonus=False)
        td = TensorDict({"observation": torch.randn(16, OBS)}, batch_size=[16])
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            _composite_actor(seed=1)(td)  # behaviour policy differs: ratios != 1
        td.set("advantage", torch.randn(16, 1))
        td.set("value_target", torch.randn(16, 1))
        td = td.exclude("params")
        torch.testing.assert_close(gipo(td.clone())["loss_objective"], ppo(td.clone())["loss_objective"])
        out = GIPOLoss(actor, make_critic(), entropy_bonus=False)(td.clone())
        assert torch.isfinite(out["loss_objective"]) and 0 < out["trust_weight_mean"] <= 1


def test_a_registered_objective_through_gipoloss():
    from gipo_plugins import Hyperparameter, check_positive, is_objective, register_objective, unregister_objective

    register_objective("toy", Hyperparameter("toy_alpha", 0.5, "share of the IS gradient kept", check_positive))(
        lambda log_ratio, advantages, *, toy_alpha: (
            -toy_alpha * log_ratio.exp() * advantages,
            0 * log_ratio + toy_alpha,
        )
    )
    try:
        toy = GIPOLoss(make_actor(), make_critic(), objective="toy", toy_alpha=0.25)
        plain = GIPOLoss(make_actor(), make_critic(), objective="is")
        td = _stale_batch(toy, shift=0.3)
        torch.testing.assert_close(toy(td.clone())["loss_objective"], 0.25 * plain(td.clone())["loss_objective"])
        with pytest.raises(ValueError, match="toy_alpha"):
            GIPOLoss(make_actor(), make_critic(), objective="toy", toy_alpha=0.0)
        assert is_objective  # the built-ins are untouched
    finally:
        unregister_objective("toy")


def test_divergence_stays_finite_and_warns_once(caplog):
    """The documented failure (no KL, |log r| in the hundreds): finite loss and gradients, one warning."""
    gipo = GIPOLoss(make_actor(), make_critic())
    td = _stale_batch(gipo, shift=300.0)
    with caplog.at_level("WARNING", logger="torchrl"):
        for _ in range(3):
            out = gipo(td.clone())
            gipo.zero_grad()
            (out["loss_objective"] + out["loss_critic"]).backward()
    assert torch.isfinite(out["loss_objective"]) and out["log_ratio_abs_p95"] > 100
    assert all(torch.isfinite(p.grad).all() for p in gipo.parameters() if p.grad is not None)
    warnings = [r for r in caplog.records if "95th percentile of |log r|" in r.getMessage()]
    assert len(warnings) == 1 and "kl_coeff" in warnings[0].getMessage()
