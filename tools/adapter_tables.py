"""Write `docs/adapters.md`: every setting's and diagnostic's name per framework, and what bad input gets you.

The tables are derived from the code, never typed by hand: setting names come from the objective
registry and each adapter's own name map (`gipo_plugins.rllib.settings.rllib_name`,
`gipo_plugins.trl.gipo.SETTING_NAMES`), and the error table is made by *running* every bad input through
the adapter entry point a user calls and recording the exception. `tests/docs/test_adapter_tables.py`
regenerates the page and fails if the committed one differs:

```
python tools/adapter_tables.py          # rewrite docs/adapters.md
```
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "adapters.md"

WHY = {
    "objective": 'TRL selects losses with `loss_type`; `loss_type="gipo"` routes the loss through the core, '
    "`gipo_objective` picks the registered objective there; verl selects them with `policy_loss.loss_mode`: "
    "`gipo` routes through the core, `policy_loss.objective` picks the objective.",
    "sigma": "TRL prefixes an algorithm's settings (its own SAPO's are `sapo_temperature_*`).",
    "sigma_neg_ratio": "as `sigma`.",
    "kernel": "as `sigma`.",
    "clip_epsilon": "each framework already has PPO's clip range under its own name: ClipPPOLoss's "
    "`clip_epsilon`, RLlib's `clip_param`, TRL's `epsilon` / `epsilon_high` (TRL's own loss types), verl's "
    "`clip_ratio_low` / `clip_ratio_high`.",
    "sapo_tau_pos": 'TRL has its own SAPO loss (`loss_type="sapo"`, `sapo_temperature_*`); the core\'s is '
    'reached through `gipo_objective="sapo"` and `gipo_objective_kwargs`. verl has SAPO\'s temperatures as its '
    "actor's `tau_pos` / `tau_neg` (for its own `sapo` loss), and the core's SAPO reads them.",
    "sapo_tau_neg": "as `sapo_tau_pos`.",
}


VERL_NAMES = {"clip_epsilon": ("clip_ratio_low", "clip_ratio_high"), "sapo_tau_pos": ("tau_pos",),
              "sapo_tau_neg": ("tau_neg",)}  # fmt: skip
"""`gipo_plugins.verl.config.VERL_NAMES`, restated: verl cannot be imported beside the other adapters (its own
environment); `tests/verl/test_verl_config.py` checks that the two agree."""


def verl(core: str) -> str:
    """A core setting's key in verl, under `actor_rollout_ref.actor.`."""
    if core in VERL_NAMES:
        return ", ".join(f"`{name}`" for name in VERL_NAMES[core]) + " (verl's)"
    return f"`policy_loss.{core}`"


def settings_rows() -> list[list[str]]:
    from gipo_plugins import all_hyperparameters
    from gipo_plugins.rllib.settings import rllib_name
    from gipo_plugins.trl.gipo import SETTING_NAMES

    def trl(core: str) -> str:
        if core in SETTING_NAMES:
            return f"`{SETTING_NAMES[core]}`"
        if core == "clip_epsilon":
            return "`epsilon`, `epsilon_high` (TRL's losses)"
        return f'`gipo_objective_kwargs["{core}"]`'

    rows = [["objective", "`PolicyObjective(name)`", "`objective`", "`objective`",
             "`loss_type=\"gipo\"` + `gipo_objective`", "`policy_loss.loss_mode=gipo` + `policy_loss.objective`",
             WHY["objective"]]]  # fmt: skip
    for core, hp in all_hyperparameters().items():
        torchrl = "`clip_epsilon` (ClipPPOLoss's)" if core == "clip_epsilon" else f"`{core}`"
        rows.append([f"{hp.help} (default `{hp.default!r}`)", f"`{core}`", torchrl, f"`{rllib_name(core)}`",
                     trl(core), verl(core), WHY.get(core, "")])  # fmt: skip
    rows.append([
        "KL penalty: the anchor β·KL(π_behaviour ‖ π_θ) (default `None`: the published 0.1 with GIPO, 0 for a "
        "baseline; an explicit value gives both arms of an A/B the same anchor; the runs behind each default: "
        "[when GIPO helps](benchmarks/when_gipo_helps.md))",
        "`behaviour_kl_coeff` (`BEHAVIOUR_KL_COEFF`, `anchor_coeff`); the KL: `categorical_kl` (exact, from stored "
        "behaviour logits) or `behaviour_kl` (k3, from stored log-probs)",
        "`kl_coeff` + `kl_estimator`: to the behaviour policy, exact from the stored distribution or k3 (default "
        "`None`: off, as the stock loss; the recipe sets 0.1, and does as well without it: "
        "[`small_no_anchor`](benchmarks/metaworld_stale_small_no_anchor.md))",
        "`GIPOConfig`: `kl_coeff` (+ `kl_target`), PPO's adaptive analytic KL, already to the behaviour distribution. "
        "`AGIPOConfig`: `behaviour_kl_coeff` (default `None`: 0.1 with `objective=\"gipo\"`, 0 with `ppo_clip`), "
        "exact from the behaviour logits in `Columns.ACTION_DIST_INPUTS`; APPO's `kl_coeff` stays its KL to the "
        "target network (the default's runs: [`small_anchor`](benchmarks/metaworld_stale_rllib_appo_small_anchor.md), "
        "paired with the unanchored `small`)",
        "`gipo_behaviour_kl_coeff` (default `None`: 0.1 with `loss_type=\"gipo\"`, 0 with TRL's loss types). TRL: "
        "k3 per token from `old_per_token_logps` (0 when TRL stores none, i.e. on-policy). VLA: exact over the 256 "
        "action tokens of each dimension, from the categorical stored when the episode was acted (its runs: "
        "[anchored](benchmarks/vla_metaworld_anchored.md)). Next to it, "
        "TRL's `beta`: KL to a frozen reference model, a different term (the VLA trainer requires 0)",
        "`policy_loss.behaviour_kl_coeff` (default `None`: 0.1 with `objective=gipo`, 0 otherwise): k3 per token "
        "from the old log-probs; verl's `use_kl_loss` / `kl_loss_coef` stay its KL to the reference model",
        "each framework's own KL term keeps its name and meaning; the anchor is added under one name where the "
        "framework has no KL to the behaviour policy (TorchRL's `kl_coeff` already is one; TRL prefixes `gipo_`).",
    ])  # fmt: skip
    rows.append(["data checks", "`set_check_mode(\"async\")` or `(\"strict\")`", "the same, global", "the same, global",
                 "the same, global", "the same, global", "one setting for the process"])  # fmt: skip
    return rows


def diagnostics_rows() -> list[list[str]]:
    from gipo_plugins.diagnostics import METRIC_KEYS

    return [
        [f"`{k}`", f"`{k}`", f"`learners/<module_id>/{k}`", f"`gipo/{k}`", f"`actor/gipo/{k}`"] for k in METRIC_KEYS
    ]


def _error(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as error:
        message = " ".join(str(error).split())
        return f"`{type(error).__name__}`: {message[:160]}{'…' if len(message) > 160 else ''}"
    return "**no error**"


def error_rows() -> list[list[str]]:
    import torch

    from gipo_plugins import PolicyObjective, gipo_objective

    lp, old, adv = torch.zeros(4), torch.zeros(4), torch.ones(4)
    nan = torch.tensor([0.0, math.nan, 0.0, 0.0])
    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("core", "`sigma=0`", lambda: gipo_objective(lp, old, adv, sigma=0.0)),
        ("core", "`sigma=-1`", lambda: PolicyObjective("gipo", sigma=-1)),
        ("core", "`sigma_neg_ratio=nan`", lambda: PolicyObjective("gipo", sigma_neg_ratio=math.nan)),
        ("core", '`kernel="box"`', lambda: PolicyObjective("gipo", kernel="box")),
        ("core", '`objective="trpo"`', lambda: PolicyObjective("trpo")),
        ("core", "`clip_epsilon=1.0`", lambda: PolicyObjective("ppo_clip", clip_epsilon=1.0)),
        ("core", "advantages `(4, 1)` for log-probs `(4,)`", lambda: gipo_objective(lp, old, adv[:, None])),
        ("core", "NaN in `log_prob`", lambda: gipo_objective(nan, old, adv)),
        ("core", "inf in `advantages`", lambda: gipo_objective(lp, old, adv * math.inf)),
        ("core", "all-masked batch", lambda: gipo_objective(lp, old, adv, torch.zeros(4, dtype=torch.bool))),
    ]
    cases += _torchrl_cases() + _rllib_cases() + _trl_cases() + _vla_cases()
    return [[adapter, what, _error(call)] for adapter, what, call in cases]


def _torchrl_cases():
    import torch
    from tensordict import TensorDict
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.modules import IndependentNormal, ProbabilisticActor, ValueOperator

    from gipo_plugins.torchrl import GIPOLoss

    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(nn.Sequential(nn.Linear(3, 4), NormalParamExtractor()), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"], distribution_class=IndependentNormal, return_log_prob=True,
    )  # fmt: skip
    critic = ValueOperator(nn.Linear(3, 1), in_keys=["observation"])
    td = TensorDict({"observation": torch.randn(8, 3)}, [8])
    with torch.no_grad():
        actor(td)
    td["advantage"], td["value_target"] = torch.randn(8, 1), torch.randn(8, 1)
    key = GIPOLoss(actor, critic).tensor_keys.sample_log_prob

    def with_(name, value):
        bad = td.clone()
        bad[name] = value
        return lambda: GIPOLoss(actor, critic)(bad)

    def schedule_sigma():
        GIPOLoss(actor, critic).sigma = -0.5

    nan_lp = td[key].clone()
    nan_lp[0] = math.nan
    inf_adv = td["advantage"].clone()
    inf_adv[1] = math.inf
    return [
        ("TorchRL", "`GIPOLoss(..., sigma=-1.0)`", lambda: GIPOLoss(actor, critic, sigma=-1.0)),
        ("TorchRL", "`GIPOLoss(..., kernel=\"box\")`", lambda: GIPOLoss(actor, critic, kernel="box")),
        ("TorchRL", "`GIPOLoss(..., kl_coeff=-0.1)`", lambda: GIPOLoss(actor, critic, kl_coeff=-0.1)),
        ("TorchRL", "`loss.sigma = -0.5` (a scheduler)", schedule_sigma),
        ("TorchRL", "NaN in the stored log-probs", with_(key, nan_lp)),
        ("TorchRL", "inf in `advantage`", with_("advantage", inf_adv)),
        ("TorchRL", "all-masked batch", with_(("collector", "mask"), torch.zeros(8, dtype=torch.bool))),
    ]  # fmt: skip


def _rllib_cases():
    from gipo_plugins.rllib import AGIPOConfig, GIPOConfig

    return [
        ("RLlib", "`GIPOConfig().training(sigma=-1.0)`", lambda: GIPOConfig().training(sigma=-1.0)),
        ("RLlib", "`GIPOConfig().training(sigma=-1)`", lambda: GIPOConfig().training(sigma=-1)),
        ("RLlib", "`GIPOConfig().training(sapo_tau_neg=-1.0)`", lambda: GIPOConfig().training(sapo_tau_neg=-1.0)),
        ("RLlib", "`GIPOConfig().training(objective=\"trpo\")`", lambda: GIPOConfig().training(objective="trpo")),
        ("RLlib", "`GIPOConfig.from_dict({\"sigma\": 0})`", lambda: GIPOConfig.from_dict({"sigma": 0})),
        ("RLlib", "`AGIPOConfig().training(kernel=\"box\")`", lambda: AGIPOConfig().training(kernel="box")),
        ("RLlib", "`AGIPOConfig().training(behaviour_kl_coeff=-0.1)`",
         lambda: AGIPOConfig().training(behaviour_kl_coeff=-0.1)),
    ]  # fmt: skip


def _trl_cases():
    from gipo_plugins.trl import GIPOConfig

    def config(**kwargs):
        return lambda: GIPOConfig(output_dir="/tmp/gipo-error-table", use_cpu=True, report_to="none", **kwargs)

    return [
        ("TRL", "`GIPOConfig(gipo_sigma=-1.0)`", config(gipo_sigma=-1.0)),
        ("TRL", "`GIPOConfig(gipo_kernel=\"box\")`", config(gipo_kernel="box")),
        ("TRL", "`GIPOConfig(gipo_aggregation=\"sapo\")`", config(gipo_aggregation="sapo")),
        ("TRL", "`GIPOConfig(delta=2.0)`", config(delta=2.0)),
        ("TRL", "`GIPOConfig(gipo_objective=\"trpo\")`", config(gipo_objective="trpo")),
        ("TRL", "`GIPOConfig(gipo_objective_kwargs={\"tau\": 2})`", config(gipo_objective_kwargs={"tau": 2})),
        ("TRL", "`GIPOConfig(off_policy_mask_threshold=0.5)`", config(off_policy_mask_threshold=0.5)),
        ("TRL", "`GIPOConfig(epsilon_high=0.28)` (DAPO's, kept from a GRPO config)", config(epsilon_high=0.28)),
        ("TRL", "`GIPOConfig(loss_type=\"gipoo\")`", config(loss_type="gipoo")),
        ("TRL", "`GIPOConfig(gipo_behaviour_kl_coeff=-0.1)`", config(gipo_behaviour_kl_coeff=-0.1)),
        ("TRL", "`GIPOConfig(loss_type=\"dapo\", gipo_behaviour_kl_coeff=\"0.1\")`",
         config(loss_type="dapo", gipo_behaviour_kl_coeff="0.1")),
    ]  # fmt: skip


def _vla_cases():
    import numpy as np

    from gipo_plugins.vla import VLAGIPOConfig
    from gipo_plugins.vla.actions import normalize

    stats = {"q01": [-1.0, -1.0], "q99": [1.0, 1.0]}

    def config(**kwargs):
        return lambda: VLAGIPOConfig(output_dir="/tmp/gipo-error-table", use_cpu=True, report_to="none", **kwargs)

    def image_env():
        from gipo_plugins.metaworld.pixels import MetaWorldImageEnv

        return MetaWorldImageEnv("reach-v3", image_size=4)

    return [
        ("VLA", "`VLAGIPOConfig(task=\"reach-v2\")`", config(task="reach-v2")),
        ("VLA", "`VLAGIPOConfig(beta=0.04)`", config(beta=0.04)),
        ("VLA", "`VLAGIPOConfig(gipo_behaviour_kl_coeff=nan)`", config(gipo_behaviour_kl_coeff=math.nan)),
        ("VLA", "`VLAGIPOConfig(replay_episodes=32, fresh_episodes=3, num_generations=4)`",
         config(replay_episodes=32, fresh_episodes=3, num_generations=4, per_device_train_batch_size=8)),
        ("VLA", "`MetaWorldImageEnv(image_size=4)`", image_env),
        ("VLA", "actions outside the statistics' range", lambda: normalize(np.array([[2.0, 0.0]]), stats)),
        ("VLA", "statistics without `q99`", lambda: normalize(np.zeros((1, 2)), {"q01": [-1.0, -1.0]})),
    ]  # fmt: skip


def _table(headers: list[str], rows: list[list[str]]) -> str:
    cells = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)


def render() -> str:
    return "\n".join([
        "# One table per concern: settings, diagnostics and errors in every adapter",
        "",
        "Generated by `python tools/adapter_tables.py` from the code (a test checks the page is current). "
        "The same name wherever a framework's convention allows it; where it does not, the last column says "
        "why. The VLA adapter's `VLAGIPOConfig` is TRL's `GIPOConfig` with episode settings, so it takes TRL's "
        "names.",
        "",
        "## Settings",
        "",
        _table(["setting", "core", "TorchRL `GIPOLoss`", "RLlib `GIPOConfig` / `AGIPOConfig`", "TRL / VLA `GIPOConfig`",
                "verl `GIPOPolicyLossConfig` (under `actor_rollout_ref.actor.`)", "why a name differs"],
               settings_rows()),
        "",
        "## Diagnostics",
        "",
        "Computed by `gipo_plugins.utilization_metrics` on the device (no host sync), logged by each framework's "
        "own logger: TorchRL's loss outputs (its loggers, TensorBoard/W&B/CSV), RLlib's metrics logger (result dict, "
        "TensorBoard), TRL's `_metrics` (its `report_to` integrations), verl's actor metrics (its trackers).",
        "",
        _table(["core key", "TorchRL output key", "RLlib result key", "TRL / VLA log key", "verl metric key"],
               diagnostics_rows()),
        "",
        "## Bad input → the error you see",
        "",
        "Each row was produced by running the input through the entry point named (data checks in the default "
        "`\"async\"` mode, on the CPU). verl's adapter runs in an environment of its own, so its errors are not "
        "in this table: `tests/verl/test_verl_config.py` pins them.",
        "",
        _table(["adapter", "input", "error"], error_rows()),
        "",
    ])  # fmt: skip


def main() -> None:
    PAGE.write_text(render())
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
