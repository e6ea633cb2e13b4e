r"""Trust-weight kernels on the log importance ratio.

For a log-ratio $\ell = \log \pi_\theta(a|s) - \log \pi_{old}(a|s)$ and a scale
$\sigma > 0$, the trust weight is $w = k(\ell / \sigma)$ with

| kernel | $k(x)$ | $\log k(x)$ |
|---|---|---|
| `gaussian` | $e^{-x^2/2}$ | $-x^2/2$ |
| `laplacian` | $e^{-\vert x\vert}$ | $-\vert x\vert$ |
| `cauchy` | $1/(1+x^2)$ | $-\log(1+x^2)$ |

Every kernel is symmetric in log space, $w(r) = w(1/r)$, equals 1 at $r = 1$, and
decays smoothly but never reaches exactly zero for finite $\ell$ (bar fp32 underflow).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gipo_plugins._checks import as_float_tensor, check_broadcasts_to, check_choice, check_positive

KERNELS: tuple[str, ...] = ("gaussian", "laplacian", "cauchy")
MAX_LOG_GRAD_WEIGHT = 20.0
"""Cap on $\\log u$ and $\\log r$ (value only, the gradient passes straight through): ratios are formed as
$e^{\\min(x, 20)}$ wherever the core exponentiates a log-ratio (objectives and diagnostics alike)."""


def log_kernel(x: Tensor, kernel: str = "gaussian") -> Tensor:
    """$\\log k(x)$ for the named kernel (see the module table); no input checks."""
    if kernel == "gaussian":
        return -0.5 * x.square()
    if kernel == "laplacian":
        return -x.abs()
    if kernel == "cauchy":
        return -torch.log1p(x.square())
    check_choice("kernel", kernel, KERNELS)
    raise AssertionError("unreachable")


def log_trust_weight(log_ratio: Tensor, sigma: float | Tensor = 1.0, kernel: str = "gaussian") -> Tensor:
    r"""$\log w = \log k(\ell / \sigma)$, finite for any finite $\ell$."""
    return log_kernel(log_ratio / sigma, kernel)


def trust_weight(log_ratio: Tensor, sigma: float | Tensor = 1.0, kernel: str = "gaussian") -> Tensor:
    r"""Element-wise trust weight $w = k(\ell / \sigma) \in (0, 1]$.

    Args:
        log_ratio: $\ell = \log r$, any shape. Half precision is computed in fp32.
        sigma: scale $\sigma > 0$; a float or a tensor broadcastable to `log_ratio`.
        kernel: `"gaussian"` ($e^{-x^2/2}$), `"laplacian"` ($e^{-|x|}$) or
            `"cauchy"` ($1/(1+x^2)$).

    Returns:
        A tensor of `log_ratio`'s shape. It is **not** detached: callers that use it as a trust
        weight in a loss (as [`gipo_plugins.gipo_objective`][] does) pass `log_ratio.detach()`.

    Raises:
        ValueError: unknown `kernel`; `sigma` not finite and > 0; `log_ratio` empty.

    Examples:
        >>> trust_weight(torch.tensor([0.0, 1.0]), sigma=1.0)
        tensor([1.0000, 0.6065])
    """
    check_choice("kernel", kernel, KERNELS)
    check_positive("sigma", sigma)
    log_ratio = as_float_tensor("log_ratio", log_ratio)
    if isinstance(sigma, Tensor):
        check_broadcasts_to("sigma", sigma, log_ratio.shape, "log_ratio")
    return torch.exp(log_trust_weight(log_ratio, sigma, kernel))
