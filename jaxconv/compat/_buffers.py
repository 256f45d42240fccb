"""The NumPy copies the compat layer makes: 64-byte aligned, from buffers it reuses.

Alignment. PJRT's CPU client reads a NumPy argument in place only when its data is
64-byte aligned; NumPy's allocator gives 16, and then every call copies every argument
(and XLA's kernels ran slower on the copies): a (200, 3072) float32 forward of the FC
net took 2.0 ms from NumPy's arrays, 1.6 from aligned ones. So every array of 16 KiB or
more that the layer hands out, or passes on to XLA as a cache copy, is 64-byte aligned;
below that, XLA's copy costs less than aligning here (measured per call).

Reuse. A training step copies a few MB (a layer's frozen inputs, its gradients) and
frees them a call or two later. glibc hands the top of its heap back to the kernel
once more than its trim threshold lies free there, and the next allocation faults
every page in again: the notebook's 50-sample overfitting run (FC net, a (3072, 100)
weight) took 35-55 thousand page faults per run in some processes (about 2.5 us each,
half the run's time; NumPy's own layers: 1,200). So the large copies come from a pool
of buffers, one list per size; a buffer is taken again once no array refers to it any
more (its reference count is back to the pool's own), which makes reuse invisible to
whoever still holds a copy. The pool keeps at most ``_PER_SIZE`` buffers of a size
and ``_MAX_BYTES`` in all (free buffers of other sizes give way to a new size); past
that a copy is a plain allocation.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

ALIGN = 64
ALIGN_FROM_BYTES = 1 << 14
_PER_SIZE = 16
_MAX_BYTES = 256 << 20


class _Pool:
    def __init__(self):
        self.by_size: dict[int, list[np.ndarray]] = {}
        self.held_bytes = 0
        self.lock = threading.Lock()    # two threads must not take one free buffer

    def take(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer of ``nbytes`` that no array refers to."""
        with self.lock:
            held = self.by_size.setdefault(nbytes, [])
            for buffer in held:
                # references: the list, the loop variable, getrefcount's argument
                if sys.getrefcount(buffer) == 3:
                    return buffer
            buffer = np.empty(nbytes, np.uint8)
            if len(held) < _PER_SIZE and self._room_for(nbytes):
                held.append(buffer)
                self.held_bytes += nbytes
            return buffer

    def _room_for(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit under ``_MAX_BYTES``, after letting go of free
        buffers of other sizes if they must make room (shapes of the past give way to
        the shapes in use)."""
        for size, held in self.by_size.items():
            if self.held_bytes + nbytes <= _MAX_BYTES:
                break
            if size != nbytes:
                busy = [b for b in held if sys.getrefcount(b) > 3]    # list, b, argument
                self.held_bytes -= size * (len(held) - len(busy))
                held[:] = busy
        return self.held_bytes + nbytes <= _MAX_BYTES


_POOL = _Pool()


def aligned_copy(a) -> np.ndarray:
    """A writable copy of ``a`` (NumPy or JAX array) of its own, 64-byte aligned when
    large (no other array shares its memory while it, or a view of it, is alive)."""
    a = np.asarray(a)               # a view of a JAX array's buffer: no copy yet
    if a.nbytes < ALIGN_FROM_BYTES:
        return a.copy()
    buffer = _POOL.take(a.nbytes + ALIGN)
    start = -buffer.__array_interface__["data"][0] % ALIGN
    out = buffer[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    np.copyto(out, a)
    return out


def aligned(a):
    """``a`` itself when XLA can read it in place (small, or 64-byte aligned, or not a
    NumPy array), else an aligned copy: PJRT's own copy of an unaligned (3072, 100)
    float32 argument cost ~230 us a call (page faults on its fresh buffer), this one 36."""
    if type(a) is np.ndarray and a.nbytes >= ALIGN_FROM_BYTES and \
            a.__array_interface__["data"][0] % ALIGN:
        return aligned_copy(a)
    return a
