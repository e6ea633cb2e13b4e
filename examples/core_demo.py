"""The core in one screen: every registered objective on fresh and on stale data.

A behaviour policy collects a batch; the learner has then moved `k` steps away from it (the data are
`k` updates stale). For each objective the table shows how much of the batch still drives the
gradient: the fraction of *dead* samples (gradient exactly 0: PPO-clip's clip), the fraction GIPO
*suppresses* (trust weight below 1e-3), the mean gate and the effective sample size of the gradient
weights. Nothing is written to disk:

```
python examples/core_demo.py
```
"""

from __future__ import annotations

import torch

from gipo_plugins import PolicyObjective, objective_names


def stale_batch(staleness: float, n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs of a learner whose logits moved `staleness` × a unit random step from the behaviour's."""
    gen = torch.Generator().manual_seed(seed)
    behaviour = torch.randn(n, 16, generator=gen)
    learner = behaviour + staleness * torch.randn(n, 16, generator=gen)
    actions = torch.multinomial(torch.softmax(behaviour, -1), 1, generator=gen).squeeze(-1)
    take = torch.arange(n)
    log_prob = torch.log_softmax(learner, -1)[take, actions]
    old_log_prob = torch.log_softmax(behaviour, -1)[take, actions]
    return log_prob, old_log_prob, torch.randn(n, generator=gen)


def main() -> None:
    header = ("staleness", "objective", "dead", "suppressed", "mean gate", "ESS", "|log r| p95")
    print("{:>9}  {:<9} {:>6} {:>10} {:>9} {:>6} {:>11}".format(*header))
    for staleness in (0.0, 0.5, 1.5, 4.0):
        log_prob, old_log_prob, advantages = stale_batch(staleness)
        for name in objective_names():
            m = PolicyObjective(name)(log_prob, old_log_prob, advantages).metrics
            print(f"{staleness:>9.1f}  {name:<9} {m['dead_fraction']:>6.2f} {m['suppressed_fraction']:>10.2f} "
                  f"{m['trust_weight_mean']:>9.2f} {m['ess']:>6.2f} {m['log_ratio_abs_p95']:>11.2f}")  # fmt: skip
    print(
        "PPO-clip zeroes a third to a half of the samples as soon as the data are stale; GIPO damps them smoothly "
        "(a weight reaches 0 only when it underflows fp32, at |log r| > ~14 sigma)."
    )


if __name__ == "__main__":
    main()
