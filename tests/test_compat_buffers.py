"""The compat layer's copies (jaxconv.compat._buffers): aligned, reused only when free.

The oracle for "free" is the copies' own values: a buffer handed out again while an
array still uses it would change that array's values, which the tests read back.
"""
import threading

import numpy as np
import pytest

from jaxconv.compat import _buffers
from jaxconv.compat.cs231n import layers, optim

LARGE = (64, 128)               # 64 KiB in float64: the pooled, aligned path
SMALL = (4, 5)


def address(a):
    return a.__array_interface__["data"][0]


def test_copies_are_aligned_writable_and_their_own():
    a = np.random.RandomState(0).randn(*LARGE)
    copy = _buffers.aligned_copy(a)
    assert address(copy) % _buffers.ALIGN == 0 and copy.flags.writeable
    np.testing.assert_array_equal(copy, a)
    assert not np.shares_memory(copy, a)
    copy += 1.0
    assert not np.array_equal(copy, a)          # writing to the copy leaves a alone


def test_a_freed_copy_is_reused_and_a_live_one_never():
    rng = np.random.RandomState(1)
    first = _buffers.aligned_copy(rng.randn(*LARGE))
    kept_values = first.copy()
    view = first[3:5]                           # a view keeps the buffer busy too
    del first
    others = [_buffers.aligned_copy(rng.randn(*LARGE)) for _ in range(5)]
    assert all(not np.shares_memory(view, o) for o in others)
    np.testing.assert_array_equal(view, kept_values[3:5])
    freed = address(others[-1])
    del others
    again = _buffers.aligned_copy(rng.randn(*LARGE))
    assert address(again) == freed or address(again) in _pool_addresses(again.nbytes)


def _pool_addresses(nbytes):
    return {address(b) + (-address(b) % _buffers.ALIGN)
            for b in _buffers._POOL.by_size.get(nbytes + _buffers.ALIGN, [])}


def test_the_pool_keeps_at_most_its_cap_per_size():
    shape = (33, 65)                            # a size no other test uses
    live = [_buffers.aligned_copy(np.full(shape, float(i))) for i in range(_buffers._PER_SIZE + 3)]
    held = _buffers._POOL.by_size[live[0].nbytes + _buffers.ALIGN]
    assert len(held) == _buffers._PER_SIZE
    for i, copy in enumerate(live):             # the copies past the cap are plain arrays
        np.testing.assert_array_equal(copy, i)


def test_small_arrays_are_plain_copies():
    a = np.ones(SMALL)
    copy = _buffers.aligned_copy(a)
    np.testing.assert_array_equal(copy, a)
    assert not np.shares_memory(copy, a)


def test_aligned_passes_through_what_xla_reads_in_place():
    small = np.ones(SMALL)
    assert _buffers.aligned(small) is small
    pooled = _buffers.aligned_copy(np.ones(LARGE))
    assert _buffers.aligned(pooled) is pooled
    storage = np.zeros(np.prod(LARGE) + 8)     # an unaligned view: offset by 8 bytes
    start = (-address(storage) % _buffers.ALIGN) // 8 + 1
    unaligned = storage[start:start + np.prod(LARGE)].reshape(LARGE)
    result = _buffers.aligned(unaligned)
    assert result is not unaligned and address(result) % _buffers.ALIGN == 0
    np.testing.assert_array_equal(result, unaligned)


def test_threads_never_share_a_buffer():
    errors = []

    def work(seed):
        rng = np.random.RandomState(seed)
        for _ in range(200):
            values = rng.randn(*LARGE)
            copy = _buffers.aligned_copy(values)
            if not np.array_equal(copy, values):
                errors.append(seed)
    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_cache_survives_many_later_calls_of_its_shape():
    """The layer's frozen inputs come from the pool and XLA reads them in place as the
    backward's residuals: later forwards of the same shape must not reuse them."""
    rng = np.random.RandomState(2)
    x, w, b, dout = rng.randn(40, 120), rng.randn(120, 300), rng.randn(300), rng.randn(40, 300)
    out, cache = layers.affine_forward(x, w, b)
    for _ in range(20):                         # same shapes, other values, caches dropped
        layers.affine_forward(rng.randn(40, 120), rng.randn(120, 300), rng.randn(300))
    dx, dw, db = layers.affine_backward(dout, cache)
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dout @ w.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, x.T @ dout, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dout.sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w_dtype,dw_dtype", [(np.float32, np.float32), (np.float32, np.float64),
                                              (np.float64, np.float64)])
def test_sgd_in_place_on_large_unaligned_arrays_equals_numpy(w_dtype, dw_dtype):
    rng = np.random.RandomState(3)
    w, dw = rng.randn(300, 100).astype(w_dtype), rng.randn(300, 100).astype(dw_dtype)
    expected = w.copy()
    expected -= 1e-2 * dw                       # CS231n's `w -= learning_rate * dw`
    next_w, _ = optim.sgd(w, dw, {"learning_rate": 1e-2})
    assert next_w is w and w.dtype == w_dtype
    np.testing.assert_array_equal(w, expected)


def test_free_buffers_of_other_sizes_give_way_under_the_byte_cap(monkeypatch):
    pool = _buffers._Pool()
    monkeypatch.setattr(_buffers, "_MAX_BYTES", 3 * 4096)
    kept = pool.take(4096)                      # busy: stays
    for _ in range(2):                          # taken and dropped: free
        pool.take(2048)
    pool.take(2048), pool.take(2048)
    assert pool.held_bytes == 4096 + 2 * 2048
    fresh = [pool.take(5000) for _ in range(2)]
    # the free 2048-byte buffers gave way to one 5000-byte buffer; the busy one stayed,
    # so the second 5000-byte buffer is a plain allocation outside the pool
    assert [b is kept for b in pool.by_size[4096]] == [True] and pool.by_size[2048] == []
    assert [b is fresh[0] for b in pool.by_size[5000]] == [True]
    assert pool.held_bytes == 4096 + 5000 and fresh[1].nbytes == 5000


def test_random_lifetimes_never_change_a_live_array():
    """Calls, in-place writes and deletions in random order (the shapes all pooled):
    every array the layer handed out keeps exactly the values it had, or was given,
    and every backward equals NumPy's formula on the forward's inputs."""
    rng = np.random.RandomState(4)
    shapes = [((40, 120), (120, 300)), ((64, 64), (64, 256))]
    live = []                                   # (array, its expected values)
    caches = []                                 # (cache, x, w): the forward's inputs
    for step in range(300):
        action = rng.randint(4)
        if action == 0 or not caches:
            xs, ws = shapes[rng.randint(2)]
            x, w, b = rng.randn(*xs), rng.randn(*ws), rng.randn(ws[1])
            out, cache = layers.affine_forward(x, w, b)
            np.testing.assert_allclose(out, x @ w + b, rtol=1e-12, atol=1e-12)
            live.append((out, out.copy()))
            caches.append((cache, x.copy(), w.copy()))
            x[...] = 0.0                        # the caller's arrays change; the cache not
        elif action == 1:
            cache, x, w = caches[rng.randint(len(caches))]
            dout = rng.randn(x.shape[0], w.shape[1])
            dx, dw, db = layers.affine_backward(dout, cache)
            np.testing.assert_allclose(dx, dout @ w.T, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(dw, x.T @ dout, rtol=1e-12, atol=1e-12)
            live += [(dx, dx.copy()), (dw, dw.copy())]
        elif action == 2 and live:
            array, expected = live[rng.randint(len(live))]
            array *= -1.0                       # handed-out arrays are the caller's to write
            expected *= -1.0
        elif live:
            del live[rng.randint(len(live))]
            if len(caches) > 3:
                del caches[rng.randint(len(caches))]
        for array, expected in live:
            np.testing.assert_array_equal(array, expected)
