"""Count device→host synchronisations: the ops that read a tensor's value on the host."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = ("_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "allclose", "masked_select", "unique")
"""Ops whose result (or output shape) depends on tensor values, so the host waits for the device."""


class HostSyncCounter(TorchDispatchMode):
    """`with HostSyncCounter() as c: ...` then `c.count` (and `c.ops`, the names seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))

    @property
    def count(self) -> int:
        return len(self.ops)
