"""Counting what a training job asks of the device: aten ops and host-synchronising ops.

On a GPU every op the host dispatches is at least one kernel launch, and every op whose result the host
must read (a Python ``float()`` of a tensor, ``nonzero``'s data-dependent shape, ...) makes the host wait
for the card. Both are counted the same way on the CPU, which runs the same step code, so a test in CI can
hold the line without a GPU: :class:`OpCounter` is a ``TorchDispatchMode`` that counts every aten op
dispatched inside it (forward, backward, optimizer, augmentation, validation, checkpoints).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

#: aten ops that make the host wait for the device (their result, or its shape, is read on the host).
SYNC_OPS = frozenset({
    "_local_scalar_dense", "item", "is_nonzero", "nonzero", "nonzero_static_host", "equal", "allclose",
    "masked_select", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive", "argwhere",
    "repeat_interleave", "bincount", "histc", "_assert_async", "host_read",
})
_ACTIVE: list[OpCounter] = []


def note_host_read() -> None:
    """Count one explicit read of device values by the host (``Tensor.tolist`` dispatches no aten op, yet on a
    GPU it waits for the card): the training loop calls this where it reads its per-epoch figures."""
    for counter in _ACTIVE:
        counter.counts["host_read"] += 1


def op_name(func: Any) -> str:
    """The overload packet's name of an aten op (``aten.add.Tensor`` -> ``add``)."""
    packet = getattr(func, "overloadpacket", None)
    return str(getattr(packet, "__name__", None) or func)


class OpCounter(TorchDispatchMode):
    """Counts aten ops by name while active (``with OpCounter() as c: ...; c.total, c.syncs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> OpCounter:
        _ACTIVE.append(self)
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        _ACTIVE.remove(self)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.counts[op_name(func)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def syncs(self) -> int:
        return sum(n for name, n in self.counts.items() if name in SYNC_OPS)

    def sync_counts(self) -> dict[str, int]:
        return {name: n for name, n in sorted(self.counts.items()) if name in SYNC_OPS}
