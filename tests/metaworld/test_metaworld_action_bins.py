"""Meta-World's discretised action head (`BinnedActions`, `action_grid`): the space, the grid's ends, the errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("metaworld")

from gipo_plugins.metaworld import ACTION_DIM, BinnedActions, action_grid, make_metaworld_env


def test_space_and_grid_ends():
    env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=20, action_bins=256)
    assert isinstance(env, BinnedActions)
    assert env.action_space == gym.spaces.MultiDiscrete([256] * ACTION_DIM)
    assert env.observation_space.shape == (39,)
    assert env.values.shape == (ACTION_DIM, 256) and env.values.dtype == np.float32
    acted = env.action(np.array([0, 255, 128, 1]))
    assert acted[0] == -1.0 and acted[1] == 1.0  # both ends of [-1, 1] are on the grid, exactly
    np.testing.assert_allclose(acted[2:], [-1 + 2 * 128 / 255, -1 + 2 / 255], rtol=0, atol=1e-7)
    assert action_grid(5).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]  # an odd count: the middle bin is 0
    assert action_grid(2).tolist() == [-1.0, 1.0]


def test_grid_per_dimension_ranges():
    grid = action_grid(3, np.array([0.0, -2.0]), np.array([1.0, 2.0]))
    assert grid.tolist() == [[0.0, 0.5, 1.0], [-2.0, 0.0, 2.0]]


def test_bins_reach_the_simulator():
    """Bin 0 moves the hand to −x, the last bin to +x (the wrapped env steps with the grid's values)."""
    hand_x = {}
    for index in (0, 255):
        env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=20, action_bins=256)
        obs, _ = env.reset(seed=0)
        start = obs[0]
        for _ in range(5):
            obs, reward, *_, info = env.step(np.array([index, 128, 128, 128]))
        assert obs.dtype == np.float32 and isinstance(reward, float) and "success" in info
        hand_x[index] = obs[0] - start
    assert hand_x[0] < -0.01 and hand_x[255] > 0.01


def test_sampled_actions_step():
    env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=3, action_bins=4)
    env.reset(seed=0)
    env.action_space.seed(0)
    done = False
    for _ in range(3):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    assert done  # truncated at max_episode_steps


@pytest.mark.parametrize("bins", [1, 0, -3, 2.5, True, "256"])
def test_bad_bins_raise_naming_the_setting(bins):
    with pytest.raises(ValueError, match="action_bins must be an integer >= 2"):
        make_metaworld_env("reach-v3", action_bins=bins)
    with pytest.raises(ValueError, match="action_bins"):
        action_grid(bins)


def test_bad_actions_and_spaces_raise():
    env = make_metaworld_env("reach-v3", seed=0, max_episode_steps=5, action_bins=8)
    env.reset(seed=0)
    for action in ([8, 0, 0, 0], [-1, 0, 0, 0], [0, 0, 0]):  # out of range, negative (would wrap), too short
        with pytest.raises(ValueError, match=r"bin indices in 0\.\.7"):
            env.step(np.array(action))
    with pytest.raises(TypeError, match="Box action space"):
        BinnedActions(gym.make("CartPole-v1"), 8)


def test_torchrl_transform_uses_the_same_grid():
    """One map: the TorchRL adapter's `ActionBins` acts exactly the values `BinnedActions` does."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchrl")
    from tensordict import TensorDict

    from gipo_plugins.torchrl.envs import make_metaworld_env as make_torchrl_env

    bins = torch.tensor([0, 255, 128, 1])
    binning = make_torchrl_env("reach-v3", seed=0, max_episode_steps=5, action_bins=256).transform[-1]
    torchrl_values = binning.inv(TensorDict({"action": bins}, []))["action"].numpy()
    gym_values = make_metaworld_env("reach-v3", action_bins=256).action(bins.numpy())
    np.testing.assert_array_equal(torchrl_values, gym_values)
