"""Settings from verl's Hydra config: the `_target_` switch, named errors, ignored settings, bypass_mode."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from verl.protocol import DataProto
from verl.trainer.config import RolloutCorrectionConfig
from verl.trainer.ppo import rollout_corr_helper
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils import config as verl_config
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import PolicyLossConfig
from verl_helpers import actor_config, batch, run_loss

from gipo_plugins import all_hyperparameters
from gipo_plugins.verl import GIPOPolicyLossConfig
from gipo_plugins.verl.checks import check_trainer_config
from gipo_plugins.verl.config import OWN_SETTINGS, REPLACED_BY_GIPO, VERL_NAMES

TARGET = "actor_rollout_ref.actor.policy_loss._target_=gipo_plugins.verl.GIPOPolicyLossConfig"


@pytest.fixture(scope="module")
def trainer_config():
    """verl's own `ppo_trainer` config, composed by Hydra with the switch as a user writes it (once: ~3 s)."""
    with initialize_config_dir(os.path.join(os.path.dirname(verl.__file__), "trainer", "config"), version_base=None):
        return compose(
            "ppo_trainer",
            overrides=[
                TARGET,
                "actor_rollout_ref.actor.policy_loss.loss_mode=gipo",
                "+actor_rollout_ref.actor.policy_loss.sigma=0.5",
                "+actor_rollout_ref.actor.policy_loss.kernel=cauchy",
                "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            ],
        )


def _with(config, **updates):
    """A copy of `config` with dotted keys set (`OmegaConf.update`, as Hydra's `+key=value` overrides)."""
    config = copy.deepcopy(config)
    for key, value in updates.items():
        OmegaConf.update(config, key.replace("__", "."), value, force_add=True)
    return config


def test_hydra_switch_selects_the_settings_and_the_loss(trainer_config):
    actor = omega_conf_to_dataclass(trainer_config.actor_rollout_ref.actor)
    assert type(actor.policy_loss) is GIPOPolicyLossConfig
    assert (actor.policy_loss.loss_mode, actor.policy_loss.sigma, actor.policy_loss.kernel) == ("gipo", 0.5, "cauchy")
    loss, grad, metrics = run_loss(get_policy_loss_fn(actor.policy_loss.loss_mode), batch(), actor, "token-mean", 1)
    assert math.isfinite(loss.item()) and grad.abs().sum() > 0
    assert "actor/gipo/trust_weight_mean" in metrics
    check_trainer_config(trainer_config)  # the driver's check passes


def test_plain_policy_loss_config_takes_loss_mode_gipo_and_rejects_gipo_keys(trainer_config):
    plain = _with(
        trainer_config, actor_rollout_ref__actor__policy_loss___target_="verl.workers.config.PolicyLossConfig"
    )
    with open_dict(plain):
        del plain.actor_rollout_ref.actor.policy_loss.sigma, plain.actor_rollout_ref.actor.policy_loss.kernel
    actor = omega_conf_to_dataclass(plain.actor_rollout_ref.actor)
    assert type(actor.policy_loss) is PolicyLossConfig and actor.policy_loss.loss_mode == "gipo"
    run_loss(get_policy_loss_fn("gipo"), batch(), actor, "token-mean", weights=False)
    unknown = _with(plain, actor_rollout_ref__actor__policy_loss__sigma=0.5)
    with pytest.raises(Exception, match=r"sigma"):  # verl's own class rejects GIPO's keys: hence the _target_
        omega_conf_to_dataclass(unknown.actor_rollout_ref.actor)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sigma", -1.0, "policy_loss.sigma must be finite and > 0, got -1.0"),
        ("sigma", 0, "policy_loss.sigma must be finite and > 0"),
        ("sigma_neg_ratio", float("nan"), "policy_loss.sigma_neg_ratio must be finite and > 0"),
        ("kernel", "box", "unknown policy_loss.kernel 'box'"),
        ("behaviour_kl_coeff", -0.1, "policy_loss.behaviour_kl_coeff must be None or a finite number >= 0"),
        ("objective", "trpo", "policy_loss.objective: unknown objective 'trpo'"),
        ("objective_kwargs", {"tau": 1.0}, r"policy_loss.objective_kwargs\['tau'\]: unknown setting"),
        ("objective_kwargs", {"sigma": 1.0}, r"set sigma as policy_loss.sigma"),
        ("objective_kwargs", {"sapo_tau_pos": 1.0}, r"verl's actor config has it: set actor.tau_pos"),
    ],
)
def test_bad_values_raise_when_the_config_is_built(trainer_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        GIPOPolicyLossConfig(**{key: value})
    bad = _with(trainer_config, **{f"actor_rollout_ref__actor__policy_loss__{key}": value})
    with pytest.raises(Exception, match=message):  # through Hydra (wrapped in its InstantiationException)
        omega_conf_to_dataclass(bad.actor_rollout_ref.actor)
    with pytest.raises(ValueError, match=message):  # the trainer's config check, on the driver
        verl_config.validate_config(bad, use_reference_policy=False, use_critic=False)


@pytest.mark.parametrize(
    ("setting", "value", "objective", "rejected"),
    [
        ("clip_ratio_high", 0.28, "gipo", True),  # DAPO's clip-higher kept from a vanilla config: GIPO opens it
        ("clip_ratio_low", 0.1, "sapo", True),
        ("clip_ratio", 0.3, "gipo", True),
        ("clip_ratio_high", 0.28, "ppo_clip", False),  # the core's PPO-clip uses verl's clip range
        ("clip_ratio_c", 10.0, "gipo", True),  # verl's dual clip: no core objective has it
        ("clip_ratio_c", 10.0, "ppo_clip", True),
        ("tau_pos", 2.0, "gipo", False),  # verl's SAPO temperature: another loss's setting, as in TRL
    ],
)
def test_actor_settings_gipo_would_ignore_are_rejected(setting, value, objective, rejected):
    config = actor_config(policy_loss=GIPOPolicyLossConfig(objective=objective), **{setting: value})
    call = lambda: run_loss(get_policy_loss_fn("gipo"), batch(), config, "token-mean", weights=False)  # noqa: E731
    if rejected:
        with pytest.raises(ValueError, match=rf"actor.{setting}={value}"):
            call()
    else:
        call()
    vanilla = actor_config(
        policy_loss=GIPOPolicyLossConfig(loss_mode="vanilla", objective=objective), **{setting: value}
    )
    run_loss(
        get_policy_loss_fn("vanilla"), batch(), vanilla, "token-mean", weights=False
    )  # other loss modes: untouched


def test_replaced_settings_are_caught_on_the_driver(trainer_config):
    bad = _with(trainer_config, actor_rollout_ref__actor__clip_ratio_high=0.28)
    with pytest.raises(ValueError, match=r"actor.clip_ratio_high=0.28 sets the clip range's upper bound"):
        verl_config.validate_config(bad, use_reference_policy=False, use_critic=False)


def test_verls_clip_range_and_temperatures_are_checked_by_the_core():
    config = actor_config(policy_loss=GIPOPolicyLossConfig(objective="ppo_clip"), clip_ratio_low=1.2)
    with pytest.raises(ValueError, match=r"actor.clip_ratio_low/clip_ratio_high low must be < 1.0"):
        run_loss(get_policy_loss_fn("gipo"), batch(), config, "token-mean", weights=False)
    config = actor_config(policy_loss=GIPOPolicyLossConfig(objective="sapo"), tau_neg=-1.0)
    with pytest.raises(ValueError, match=r"actor.tau_neg must be finite and > 0"):
        run_loss(get_policy_loss_fn("gipo"), batch(), config, "token-mean", weights=False)


def test_every_registered_setting_has_one_home():
    """Each core hyperparameter is a `GIPOPolicyLossConfig` field or one of verl's actor fields, never both."""
    fields = set(GIPOPolicyLossConfig.__dataclass_fields__) - set(PolicyLossConfig.__dataclass_fields__)
    assert fields == {"objective", *OWN_SETTINGS, "behaviour_kl_coeff", "objective_kwargs"}
    assert set(all_hyperparameters()) == set(OWN_SETTINGS) | set(VERL_NAMES)
    for core in OWN_SETTINGS:
        field = GIPOPolicyLossConfig.__dataclass_fields__[core]
        assert (field.default, field.metadata["help"]) == (all_hyperparameters()[core].default,
                                                           all_hyperparameters()[core].help)  # fmt: skip
    assert set(REPLACED_BY_GIPO) <= set(actor_config().__dataclass_fields__)


# --- algorithm.rollout_correction.bypass_mode ---------------------------------------------------------------


def test_bypass_mode_with_gipo_fails_the_trainers_config_check(trainer_config):
    bypass = _with(trainer_config, algorithm__rollout_correction__bypass_mode=True)
    pattern = (
        r"algorithm.rollout_correction.bypass_mode=true replaces actor_rollout_ref.actor.policy_loss.loss_mode=gipo"
    )
    with pytest.raises(ValueError, match=pattern):
        verl_config.validate_config(bypass, use_reference_policy=False, use_critic=False)
    vanilla = _with(bypass, actor_rollout_ref__actor__policy_loss__loss_mode="vanilla")
    check_trainer_config(vanilla)  # verl's own use of bypass_mode is untouched


def test_verls_trainer_entry_point_uses_the_checked_validate_config():
    import verl.trainer.main_ppo as main_ppo

    assert main_ppo.validate_config is verl_config.validate_config
    assert verl_config.validate_config.__wrapped__.__module__ == "verl.utils.config"


def test_bypass_mode_switch_refuses_to_replace_gipo():
    data = DataProto.from_dict(tensors={"rollout_log_probs": torch.zeros(2, 3), "old_log_probs": torch.ones(2, 3)})
    policy_loss = OmegaConf.create({"loss_mode": "gipo"})
    rollout_correction = OmegaConf.structured(RolloutCorrectionConfig(bypass_mode=True))
    with pytest.raises(ValueError, match=r"bypass_mode=true replaces .*policy_loss.loss_mode=gipo"):
        rollout_corr_helper.apply_bypass_mode(data, rollout_correction, policy_loss)
    assert policy_loss.loss_mode == "gipo" and (data.batch["old_log_probs"] == 1).all()  # nothing was swapped
    vanilla = OmegaConf.create({"loss_mode": "vanilla"})
    rollout_corr_helper.apply_bypass_mode(data, rollout_correction, vanilla)  # verl's behaviour otherwise
    assert vanilla.loss_mode == "bypass_mode" and (data.batch["old_log_probs"] == 0).all()


def test_bypass_mode_on_the_policy_loss_config_is_rejected():
    bypass = RolloutCorrectionConfig(bypass_mode=True)
    with pytest.raises(ValueError, match=r"policy_loss.rollout_correction.bypass_mode=true replaces"):
        GIPOPolicyLossConfig(rollout_correction=bypass)
    config = actor_config(policy_loss=PolicyLossConfig(loss_mode="gipo", rollout_correction=bypass))
    with pytest.raises(ValueError, match=r"policy_loss.rollout_correction.bypass_mode=true replaces"):
        run_loss(get_policy_loss_fn("gipo"), batch(), config, "token-mean", weights=False)


def test_the_settings_tables_verl_names_are_the_adapters():
    """docs/adapters.md is generated in the main environment, where verl cannot be imported: its restated map agrees."""
    import importlib.util
    from pathlib import Path

    from gipo_plugins.verl.config import VERL_NAMES

    path = Path(__file__).resolve().parents[2] / "tools" / "adapter_tables.py"
    spec = importlib.util.spec_from_file_location("adapter_tables", path)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert dict(VERL_NAMES) == tables.VERL_NAMES
