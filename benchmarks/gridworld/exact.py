r"""Exact (sampling-free) machinery for the paper's 2×2 GridWorld bias–variance study.

The grid:

```
S0 | S1
---+---
S2 | G      (G absorbing, value 0)
```

Actions `up, right, down, left`; a move off the grid leaves the agent where it is. Every step
costs $-1$, $\gamma = 0.9$. A tabular softmax policy has logits $\theta(s, a)$.

For a target $\pi$ and a behaviour $\mu$ we look at the start state S0 (the
state-visitation factor is the same for every estimator and is dropped). With $A^\pi$ the
exact advantage (a perfect critic), the on-policy gradient is

$$
g^\star = \mathbb{E}_{a\sim\pi}\big[A^\pi(S_0,a)\,\nabla_{\theta(S_0,\cdot)}\log\pi(a|S_0)\big],
$$

and an objective's per-sample estimate from $a \sim \mu$ is $\hat g(a) = -\nabla_\theta
\text{term}(a)$, the gradient of the core objective's per-element term (`gipo_plugins`, not a
re-typed formula) with $\log\pi_{old} = \log\mu$. Over the four actions we enumerate, exactly,

- mean $\bar g = \sum_a \mu(a)\,\hat g(a)$, bias $\bar g - g^\star$,
- variance $\sum_a \mu(a)\,(\hat g(a) - \bar g)^2$, MSE $=$ bias² + variance (one sample),
- dead fraction $\sum_a \mu(a)\,[\hat g(a) = 0 \ne \hat g_{IS}(a)]$: the behaviour mass whose
  gradient the objective switches off although plain IS would use it.

Bias, variance and MSE are reported for the component $\theta(S_0, \text{right})$. Everything
is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gipo_plugins import PolicyObjective

ACTIONS = ("up", "right", "down", "left")
STATES = ("S0", "S1", "S2")
GAMMA = 0.9
REWARD = -1.0
RIGHT = ACTIONS.index("right")
_MOVES = {"up": (-1, 0), "right": (0, 1), "down": (1, 0), "left": (0, -1)}
_CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))  # S0, S1, S2, G
DTYPE = torch.float64


def transitions() -> Tensor:
    """Deterministic transition tensor `P[s, a, s']` over S0..S2 and the goal (index 3)."""
    P = torch.zeros(len(STATES), len(ACTIONS), len(_CELLS), dtype=DTYPE)
    for s, (row, col) in enumerate(_CELLS[:3]):
        for a, name in enumerate(ACTIONS):
            dr, dc = _MOVES[name]
            cell = (row + dr, col + dc)
            P[s, a, _CELLS.index(cell) if cell in _CELLS else s] = 1.0
    return P


def tabular_policy(*probs_per_state: tuple[float, ...] | list[float]) -> Tensor:
    """A `[3, 4]` policy table; one row gives every state the same action probabilities."""
    table = torch.tensor(probs_per_state * (3 if len(probs_per_state) == 1 else 1), dtype=DTYPE)
    if table.shape != (len(STATES), len(ACTIONS)) or (table <= 0).any():
        raise ValueError(f"policy must be 1 or 3 rows of 4 positive probabilities, got shape {tuple(table.shape)}")
    return table / table.sum(-1, keepdim=True)


def mixture(*parts: tuple[float, Tensor]) -> Tensor:
    """Per-state mixture `sum_i c_i * policy_i` of policy tables (weights must sum to 1)."""
    total = sum(c for c, _ in parts)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"mixture weights must sum to 1, got {total}")
    return sum(c * p for c, p in parts)


def state_values(policy: Tensor) -> Tensor:
    r"""Exact $V^\pi$ of S0..S2 from the Bellman equations $(I - \gamma P_\pi)V = r$."""
    P = transitions()
    P_pi = torch.einsum("sa,sat->st", policy, P)[:, :3]  # the goal contributes value 0
    return torch.linalg.solve(torch.eye(3, dtype=DTYPE) - GAMMA * P_pi, torch.full((3,), REWARD, dtype=DTYPE))


def iterative_state_values(policy: Tensor, sweeps: int = 2000) -> Tensor:
    """$V^\\pi$ by iterative policy evaluation (the textbook check of `state_values`)."""
    P = transitions()
    V = torch.zeros(4, dtype=DTYPE)
    for _ in range(sweeps):
        V = torch.cat([(policy * (REWARD + GAMMA * P @ V)).sum(-1), V.new_zeros(1)])
    return V[:3]


def advantages(policy: Tensor) -> Tensor:
    r"""$A^\pi(s, a) = -1 + \gamma \sum_{s'} P(s'|s,a) V^\pi(s') - V^\pi(s)$, shape `[3, 4]`."""
    V = torch.cat([state_values(policy), torch.zeros(1, dtype=DTYPE)])
    return REWARD + GAMMA * transitions() @ V - V[:3, None]


def true_gradient(target: Tensor) -> Tensor:
    r"""On-policy $g^\star$ over $\theta(S_0, \cdot)$: $\pi(a)A(a) - \pi(a)\sum_b \pi(b)A(b)$."""
    pi, adv = target[0], advantages(target)[0]
    return pi * adv - pi * (pi * adv).sum()


def per_sample_gradients(objective: PolicyObjective, target: Tensor, behaviour: Tensor) -> Tensor:
    r"""`[4, 4]`: row $a$ is $\hat g(a) = -\nabla_{\theta(S_0,\cdot)}\text{term}(a)$ for action a."""
    logits = target[0].log().expand(len(ACTIONS), -1).clone().requires_grad_(True)  # one copy per sample
    actions = torch.arange(len(ACTIONS))
    log_prob = torch.log_softmax(logits, -1)[actions, actions]
    result = objective(log_prob, behaviour[0].log(), advantages(target)[0], reduction="none")
    (grad,) = torch.autograd.grad(-result.per_element.sum(), logits)
    return grad


@dataclass(frozen=True)
class EstimatorStats:
    """Exact statistics of one objective's S0 gradient estimate (component θ(S0, right))."""

    mean: float
    bias: float
    variance: float
    mse: float
    dead_fraction: float
    suppressed_fraction: float


def estimator_stats(objective: PolicyObjective, target: Tensor, behaviour: Tensor,
                    suppressed_below: float = 0.01) -> EstimatorStats:  # fmt: skip
    """Enumerate the four actions under `behaviour` and return `EstimatorStats`.

    `suppressed_fraction` is the behaviour mass whose gradient survives at less than
    `suppressed_below` of plain IS's (dead samples included).
    """
    mu = behaviour[0]
    grads = per_sample_gradients(objective, target, behaviour)
    is_grads = per_sample_gradients(PolicyObjective("is"), target, behaviour)
    component = grads[:, RIGHT]
    mean = (mu * component).sum()
    variance = (mu * (component - mean) ** 2).sum()
    bias = mean - true_gradient(target)[RIGHT]
    norm, is_norm = grads.norm(dim=-1), is_grads.norm(dim=-1)
    alive_in_is = is_norm > 0
    dead = (mu * ((norm == 0) & alive_in_is)).sum()
    suppressed = (mu * ((norm < suppressed_below * is_norm) & alive_in_is)).sum()
    return EstimatorStats(float(mean), float(bias), float(variance), float(bias**2 + variance), float(dead),
                          float(suppressed))  # fmt: skip
