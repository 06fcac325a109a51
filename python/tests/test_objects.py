"""The object store as a user sees it."""
import gc
import mmap

import numpy as np
import pytest


def _base_chain(a):
    while a is not None:
        yield a
        a = getattr(a, "base", None) if not isinstance(a, memoryview) else a.obj


def test_put_get_roundtrip(ray):
    for v in [1, "text", {"a": [1, 2]}, None, b"\x00" * 10, (1, 2.5)]:
        assert ray.get(ray.put(v)) == v
    refs = [ray.put(i) for i in range(100)]
    assert ray.get(refs) == list(range(100))


def test_numpy_get_is_zero_copy(ray):
    a = np.arange(4 << 20, dtype=np.float64)   # 32 MiB: lives in shared memory
    ref = ray.put(a)
    b = ray.get(ref)
    assert np.array_equal(a, b)
    assert not b.flags.writeable             # immutable, like Ray
    assert any(isinstance(x, mmap.mmap) for x in _base_chain(b)), "array is not a view of the store"
    c = ray.get(ref)
    assert np.shares_memory(b, b) and c[123] == 123.0


def test_zero_copy_array_survives_ref_drop(ray):
    ref = ray.put(np.full(1 << 20, 7, dtype=np.int64))
    arr = ray.get(ref)
    del ref
    gc.collect()
    ray.put(0)  # flush the DECREF
    for _ in range(3):  # new objects must not reuse the range the array still maps
        ray.put(np.zeros(1 << 20, dtype=np.int64))
    assert int(arr.sum()) == 7 << 20


def test_freed_object_get_is_a_clear_error(ray):
    ref = ray.put("gone soon")
    oid = ref.binary()
    del ref
    gc.collect()
    ray.get(ray.put(1))   # the DECREF has reached the agent now
    with pytest.raises(ray.exceptions.ObjectFreedError) as ei:  # an ObjectLostError, as in Ray
        ray.get(ray.ObjectRef(oid))
    assert "freed" in str(ei.value)


def test_put_of_objectref_is_refused(ray):
    with pytest.raises(TypeError):
        ray.put(ray.put(1))


def test_objects_are_freed_when_refs_drop(ray):
    import shoal._api as api
    before = api._info()["objects"]["objects"]
    refs = [ray.put(np.ones(200_000)) for _ in range(5)]
    mid = api._info()["objects"]["objects"]
    assert mid >= before + 5
    del refs
    gc.collect()
    ray.put(0)
    after = api._info()["objects"]["objects"]
    assert after <= before + 1
