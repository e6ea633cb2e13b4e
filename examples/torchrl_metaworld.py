"""GIPO on Meta-World with TorchRL: the reference stale-data protocol (`gipo_plugins.torchrl.recipe`).

A per-dimension categorical MLP policy, a 20k-transition FIFO replay whose behaviour log-probs and
advantages are never recomputed, 10 actor and 100 critic steps per 500 env steps, an exact KL
penalty: the setting in which the paper reports GIPO ahead of PPO-clip. `--objective` switches
the surrogate and nothing else; `--buffer-size 500` is the fresh regime. `--help` lists every knob.

    python examples/torchrl_metaworld.py --task reach-v3 --total-steps 150000
    python examples/torchrl_metaworld.py --objective ppo_clip --logger tensorboard
"""

from gipo_plugins.torchrl.recipe import main

if __name__ == "__main__":
    main()
