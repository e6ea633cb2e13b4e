"""Input checks shared by the core: every bad input becomes a ``ValueError`` naming the argument.

Value checks (finiteness, positivity, "mask has a valid element") read tensor contents, which
forces a host sync and a data-dependent branch. They are skipped while ``torch.compile`` traces,
so compiled losses stay graph-break free; eager calls are always checked.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def as_float_tensor(name: str, value: Tensor) -> Tensor:
    """Return ``value`` as a floating tensor of at least fp32 precision (half/bf16 are upcast)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if not value.is_floating_point() or value.dtype in _LOW_PRECISION:
        return value.float()
    return value


def check_broadcasts_to(name: str, value: Tensor, shape: torch.Size, target: str) -> None:
    """Require that ``value`` broadcasts to ``shape`` without enlarging it.

    ``log_prob`` of shape ``(B,)`` with advantages of shape ``(B, 1)`` would silently broadcast to
    ``(B, B)``; that is a bug in the caller, so it is rejected here.
    """
    try:
        out = torch.broadcast_shapes(value.shape, shape)
    except RuntimeError:
        out = None
    if out != shape:
        raise ValueError(
            f"{name} with shape {tuple(value.shape)} does not broadcast to {target}'s shape {tuple(shape)}"
        )


def check_finite_where(values: dict[str, Tensor], valid: Tensor | None) -> None:
    """Raise, naming the argument, if a tensor holds NaN or ±inf at a valid position (``None``: all valid).

    One host sync for all tensors; the culprit is looked up only when something is wrong.
    """
    if _tracing():
        return
    finite = [torch.isfinite(value) for value in values.values()]
    all_finite = finite[0]
    for more in finite[1:]:
        all_finite = all_finite & more
    if bool(all_finite.all() if valid is None else (all_finite | ~valid).all()):
        return
    for name, value_finite in zip(values, finite, strict=True):
        if not bool(value_finite.all() if valid is None else (value_finite | ~valid).all()):
            raise ValueError(f"{name} contains NaN or inf at unmasked positions")


def check_mask_nonempty(valid: Tensor) -> None:
    if _tracing():
        return
    if not bool(valid.any()):
        raise ValueError("mask has no valid element: every position is masked out")


def check_positive(name: str, value: float | Tensor) -> None:
    """Require a finite value > 0 (a float, or every element of a tensor)."""
    if isinstance(value, Tensor):
        if value.numel() == 0:
            raise ValueError(f"{name} is empty")
        if _tracing():
            return
        if not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueError(f"{name} must be finite and > 0 everywhere")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def check_below(name: str, value: float | Tensor, bound: float, why: str) -> None:
    """Require ``value < bound`` (a float, or every element of a tensor)."""
    if isinstance(value, Tensor):
        if _tracing() or not bool((value >= bound).any()):
            return
    elif value < bound:
        return
    raise ValueError(f"{name} must be < {bound} {why}, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
