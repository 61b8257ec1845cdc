"""msgpack ↔ Python conversion in Rust: types, edge cases, agreement with msgpack-python."""

from __future__ import annotations

import collections
import math
from typing import Any

import pytest

import fal_realtime
from fal_realtime import ExtType, packb, unpackb

VALUES: list = [
    None,
    True,
    False,
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -(2**15),
    -(2**31),
    -(2**63),
    0.0,
    -1.5,
    1e300,
    "",
    "x" * 31,
    "x" * 32,
    "é" * 300,
    "x" * 70000,
    b"",
    b"\x00" * 300,
    b"\xff" * 70000,
    [],
    [1, [2, [3, {}]]],
    {},
    {"a": {"b": {"c": [None]}}},
    {1: "int key", "s": "str key"},
    {"images": [{"url": "u", "content": b"\x89PNG"}], "seed": 42, "nsfw": [False]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip(value: Any) -> None:
    assert unpackb(packb(value)) == value
    out = unpackb(packb(value))
    assert type(out) is type(value)


def test_same_bytes_as_msgpack_python() -> None:
    msgpack = pytest.importorskip("msgpack")
    for v in VALUES:
        assert packb(v) == msgpack.packb(v, use_bin_type=True), v
        assert unpackb(msgpack.packb(v, use_bin_type=True)) == v


def test_tuples_and_subclasses() -> None:
    assert unpackb(packb((1, 2))) == [1, 2]
    assert unpackb(packb(collections.OrderedDict(a=1))) == {"a": 1}
    assert unpackb(packb(bytearray(b"ab"))) == b"ab"
    assert unpackb(packb(memoryview(b"cd"))) == b"cd"

    class S(str):
        pass

    class I(int):  # noqa: E742
        pass

    assert unpackb(packb({S("k"): I(5)})) == {"k": 5}
    assert math.isnan(unpackb(packb(float("nan"))))


def test_ext_types() -> None:
    v = ExtType(5, b"\x01\x02\x03")
    assert unpackb(packb(v)) == v
    assert unpackb(packb({"t": ExtType(-1, b"\x00" * 8)})) == {"t": ExtType(-1, b"\x00" * 8)}


def test_float32_is_decoded() -> None:
    assert unpackb(b"\xca\x3f\xc0\x00\x00") == 1.5


def test_hostile_input_is_rejected() -> None:
    for bad in (
        b"",
        b"\xc1",
        b"\x92\x01",
        b"\x01\x02",
        b"\xdf\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xc6\xff\xff\xff\xff",
        b"\x91" * 100000,
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\x81\x90\x01",  # unhashable key
    ):
        with pytest.raises(fal_realtime.DecodeError):
            unpackb(bad)


def test_unencodable() -> None:
    deep: Any = []
    for _ in range(10000):
        deep = [deep]
    for bad in (object(), {1, 2}, 2**64, -(2**63) - 1, deep, "\udcff"):
        with pytest.raises(fal_realtime.EncodeError):
            packb(bad)
