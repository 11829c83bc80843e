"""The peak of the bytes held by tensors that torch allocates on the CPU inside a block, for checking memory formulas.

The CPU allocator keeps no statistics (``torch.cuda.max_memory_allocated`` has no CPU counterpart), so
:class:`TensorPeak` watches every operation through a dispatch mode: each new storage an operation
returns is counted until it is freed. Storages that existed before the block (the weights, the inputs)
and the views and in-place results of existing storages are not counted, so the peak is what the block
itself added. Scratch memory inside one kernel is not seen (a kernel's own buffers are small next to
the tensors it returns).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorPeak(TorchDispatchMode):
    """``with TensorPeak() as peak: ...``; then ``peak.peak`` bytes at most were held at once, ``peak.current`` at the end."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if key in self.live or size == 0:
            return
        self.live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)

        def freed() -> None:
            if self.live.get(key) == size:
                del self.live[key]
                self.current -= size

        # A storage's Python object lives as long as the storage: its finalizer runs when the memory is freed.
        weakref.finalize(storage, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            tensor.untyped_storage().data_ptr() for tensor in tree_flatten((args, kwargs))[0] if isinstance(tensor, torch.Tensor)
        }
        for tensor in tree_flatten(out)[0]:
            if (
                isinstance(tensor, torch.Tensor)
                and tensor.device.type == "cpu"
                and tensor.untyped_storage().data_ptr() not in inputs
            ):
                self._count(tensor)
        return out
