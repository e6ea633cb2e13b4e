r"""OpenVLA's action format: the prompt, q01/q99 statistics and the 256-bin action tokenizer.

Each action dimension is normalised to $[-1, 1]$ with per-dataset statistics,

$$n = 2\,\frac{a - q_{01}}{q_{99} - q_{01}} - 1 \quad\text{(on the dimensions where `mask` is true)},$$

put in one of 256 uniform bins on $[-1, 1]$, and written as one of the **last 256 ids** of the
vocabulary: $\text{id} = V - \text{digitize}(n)$ with $\text{digitize} \in 1..256$. Decoding takes
the centre of bin $b = \text{clip}(V - \text{id} - 1, 0, 254)$ among the 255 bin centres, then
un-normalises with $a = \tfrac12 (n + 1)(q_{99} - q_{01}) + q_{01}$ on the masked dimensions.

Throughout this package the *bin* of an action token is $b = V - 1 - \text{id} \in 0..255$: the
policy's categorical over the 256 action tokens is indexed by $b$, and a token decodes to the
centre `centers[min(b, 254)]`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
"""OpenVLA's prompt; the action tokens follow it."""
N_BINS = 256
"""Action bins per dimension (OpenVLA's `n_action_bins`)."""


def compute_statistics(values: np.ndarray) -> dict[str, list]:
    """Per-dimension `q01` / `q99` (and `min` / `max`, `mask`) of `values` `[N, D]`, OpenVLA's layout.

    Raises:
        ValueError: `values` is not a finite, non-empty `[N, D]` array.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"values must be a finite [N, D] array with N > 0, got shape {values.shape}")
    return {
        "q01": np.quantile(values, 0.01, axis=0).tolist(),
        "q99": np.quantile(values, 0.99, axis=0).tolist(),
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mask": [True] * values.shape[1],
    }


def _bounds(stats: dict, dim: int, name: str) -> tuple[Tensor, Tensor, Tensor]:
    if not stats or not {"q01", "q99"} <= set(stats):
        raise ValueError(f"{name} statistics with 'q01' and 'q99' are required, got {sorted(stats or {})}")
    low, high = torch.tensor(stats["q01"], dtype=torch.float64), torch.tensor(stats["q99"], dtype=torch.float64)
    mask = torch.tensor(stats.get("mask", [True] * len(low)), dtype=torch.bool)
    if len(low) != dim or len(high) != dim or len(mask) != dim:
        raise ValueError(f"{name} statistics have {len(low)} dimensions, the values have {dim}")
    return low, torch.where(high > low, high, low + 1e-8), mask


def normalize(values: Tensor | np.ndarray, stats: dict, *, clip: bool = False, name: str = "actions") -> Tensor:
    """Map `values` `[..., D]` to $[-1, 1]$ with the statistics' `q01` / `q99` on the masked dimensions.

    Args:
        values: raw values, last dimension `D`.
        stats: `{"q01": [D], "q99": [D], "mask": [D] (optional)}`.
        clip: clip values outside `[q01, q99]` (training data are clipped, as in OpenVLA).
        name: what the values are, for error messages.

    Raises:
        ValueError: NaN/inf, a dimension mismatch, or values outside `[q01, q99]` without `clip`.
    """
    values = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contain NaN or inf")
    low, high, mask = _bounds(stats, values.shape[-1], name)
    scaled = torch.where(mask, 2 * (values - low) / (high - low) - 1, values)
    outside = (scaled.abs() > 1 + 1e-6) & mask
    if outside.any() and not clip:
        raise ValueError(f"{name} outside the statistics' [q01, q99] range in dimensions "
                         f"{sorted(set(torch.nonzero(outside)[:, -1].tolist()))}; pass clip=True to clip")  # fmt: skip
    return scaled.clamp(-1, 1).float()


def unnormalize(normalized: Tensor | np.ndarray, stats: dict, *, name: str = "actions") -> Tensor:
    r"""Inverse of `normalize`: $\tfrac12 (n + 1)(q_{99} - q_{01}) + q_{01}$ on the masked dimensions."""
    normalized = torch.as_tensor(np.asarray(normalized), dtype=torch.float64)
    low, high, mask = _bounds(stats, normalized.shape[-1], name)
    return torch.where(mask, 0.5 * (normalized + 1) * (high - low) + low, normalized).float()


class ActionTokenizer:
    r"""OpenVLA's action tokenizer over the last `n_bins` ids of a vocabulary of size `vocab_size`.

    `encode`: $\text{id} = V - \text{digitize}(n)$; `decode`: the centre of bin
    $\text{clip}(V - \text{id} - 1, 0, 254)$, so a round trip is within half a bin ($1/255$) and
    any id outside the action range decodes to the nearest end (as OpenVLA's `predict_action`).

    Args:
        vocab_size: $V$, the size of the base vocabulary (without padding rows: OpenVLA uses
            `text_config.vocab_size - pad_to_multiple_of`).
        n_bins: bins per dimension.

    Raises:
        ValueError: `vocab_size <= n_bins`.
    """

    def __init__(self, vocab_size: int, n_bins: int = N_BINS):
        if vocab_size <= n_bins:
            raise ValueError(f"vocab_size ({vocab_size}) must exceed n_bins ({n_bins})")
        self.vocab_size, self.n_bins = vocab_size, n_bins
        self.bins = torch.linspace(-1.0, 1.0, n_bins)
        self.centers = (self.bins[:-1] + self.bins[1:]) / 2

    @property
    def token_ids(self) -> Tensor:
        """The action token of each bin $b = 0..255$: $V - 1 - b$ (long, descending)."""
        return self.vocab_size - 1 - torch.arange(self.n_bins)

    def encode(self, normalized: Tensor | np.ndarray) -> Tensor:
        """Token ids (long, same shape) of actions already normalised to $[-1, 1]$.

        Raises:
            ValueError: non-finite values or values outside $[-1, 1]$ (see `normalize`).
        """
        normalized = torch.as_tensor(np.asarray(normalized), dtype=torch.float32)
        if not torch.isfinite(normalized).all() or normalized.abs().max() > 1 + 1e-6:
            raise ValueError("actions must be finite and normalised to [-1, 1] (see normalize())")
        return self.vocab_size - torch.bucketize(normalized.clamp(-1, 1), self.bins, right=True)

    def decode(self, token_ids: Tensor | np.ndarray) -> Tensor:
        """Normalised actions in $[-1, 1]$ (bin centres) from token ids; out-of-range ids clip to an end."""
        index = (self.vocab_size - torch.as_tensor(np.asarray(token_ids)) - 1).clamp(0, self.n_bins - 2)
        return self.centers[index]
