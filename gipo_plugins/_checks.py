"""Input checks shared by the core: every bad input becomes an error naming the argument.

Two kinds of check:

- **settings** (σ, ε, kernel names, ...) are plain Python values, checked where they are set
  (`PolicyObjective`, an adapter's config or loss constructor): a `ValueError` at once, no cost later.
- **data** (NaN/inf log-probs or advantages, an all-masked batch) live on the device. Reading them on
  the host would force a device→host sync on every loss call, which stalls a GPU's stream. So by
  default they are *device-side asserts* (`torch._assert_async`): free on the hot path; on the CPU
  they fail at once with a `ValueError` naming the argument, on CUDA as a device-side assert carrying
  the same message (fatal to the CUDA context, as every device assert). `set_check_mode("strict")`
  (or the environment variable `GIPO_PLUGINS_CHECKS=strict`) reads them on the host instead, one
  sync per check, and raises the `ValueError` at the faulty call on any device — use it to debug.

While `torch.compile` traces, strict checks are skipped (a data-dependent Python branch would break
the graph); the asserts are traced into the graph.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)
CHECK_MODES = ("async", "strict")
_mode = os.environ.get("GIPO_PLUGINS_CHECKS", "async")
if _mode not in CHECK_MODES:
    raise ValueError(f"GIPO_PLUGINS_CHECKS must be one of {CHECK_MODES}, got {_mode!r}")


def set_check_mode(mode: str) -> None:
    """How data checks run: `"async"` (default, device-side asserts, no host sync) or `"strict"` (host sync)."""
    global _mode
    check_choice("check mode", mode, CHECK_MODES)
    _mode = mode


def get_check_mode() -> str:
    """The current data-check mode (see `set_check_mode`)."""
    return _mode


@contextmanager
def check_mode(mode: str) -> Iterator[None]:
    """Context manager: data checks in `mode` inside the block (`with check_mode("strict"): ...`)."""
    previous = get_check_mode()
    set_check_mode(mode)
    try:
        yield
    finally:
        set_check_mode(previous)


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def assert_data(condition: Tensor, message: str) -> None:
    """Fail with `message` unless the 0-dim bool tensor `condition` is true (see the module notes)."""
    if _mode == "strict":
        if not _tracing() and not bool(condition):
            raise ValueError(message)
        return
    try:
        torch._assert_async(condition, message)
    except RuntimeError as err:  # raised at once on the CPU; on CUDA the assert fires on the device
        raise ValueError(message) from err


def as_float_tensor(name: str, value: Tensor) -> Tensor:
    """Return `value` as a floating tensor of at least fp32 precision (half/bf16 are upcast)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if not value.is_floating_point() or value.dtype in _LOW_PRECISION:
        return value.float()
    return value


def check_broadcasts_to(name: str, value: Tensor, shape: torch.Size, target: str) -> None:
    """Require that `value` broadcasts to `shape` without enlarging it.

    `log_prob` of shape `(B,)` with advantages of shape `(B, 1)` would silently broadcast to
    `(B, B)`; that is a bug in the caller, so it is rejected here (shapes only: no sync).
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
    """Fail, naming the argument, if a tensor holds NaN or ±inf at a valid position (`None`: all valid)."""
    for name, value in values.items():
        finite = (value - value) == 0  # NaN for NaN and ±inf: two ops where `isfinite` takes four
        ok = finite.all() if valid is None else (finite | ~valid).all()
        assert_data(ok, f"{name} contains NaN or inf at unmasked positions")


def check_mask_nonempty(valid: Tensor) -> None:
    """Fail if the boolean mask has no true element."""
    assert_data(valid.any(), "mask has no valid element: every position is masked out")


def check_positive(name: str, value: float | Tensor) -> float | Tensor:
    """Require a finite value > 0 (a number, or every element of a tensor); returns it (floats as `float`)."""
    if isinstance(value, Tensor):
        if value.numel() == 0:
            raise ValueError(f"{name} is empty")
        if not _tracing() and not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueError(f"{name} must be finite and > 0 everywhere")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def check_optional_nonnegative(name: str, value: float | None) -> float | None:
    """Require `None` or a finite number >= 0; returns it (numbers as `float`)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be None or a finite number >= 0, got {value!r}")
    return float(value)


def check_below(name: str, value: float | Tensor, bound: float, why: str) -> None:
    """Require `value < bound` (a number, or every element of a tensor)."""
    if isinstance(value, Tensor):
        if _tracing() or not bool((value >= bound).any()):
            return
    elif value < bound:
        return
    raise ValueError(f"{name} must be < {bound} {why}, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    """Require `value` to be one of `choices`; returns it."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value
