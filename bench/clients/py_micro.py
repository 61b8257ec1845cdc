#!/usr/bin/env python3
"""Python conversion micro-benchmark: dict ↔ msgpack in our wheel
(``fal_realtime.packb`` / ``unpackb``, the conversions the connections use)
beside ``msgpack`` (what ``fal_client`` uses). Prints one JSON list."""

import json
import timeit

import fal_realtime

try:
    import msgpack
except ImportError:  # smoke venvs have no third-party packages
    msgpack = None

SMALL = {"request_id": "r12345", "data": "".join(chr(97 + i % 26) for i in range(64))}
LARGE = {"request_id": "r12345", "data": bytes(range(256)) * 1024}


def per_call_us(fn, min_time=0.3):
    n = 1
    while True:
        t = timeit.timeit(fn, number=n)
        if t >= min_time:
            return t / n * 1e6
        n *= 4


rows = []
for name, obj in (("small", SMALL), ("large", LARGE)):
    ours = fal_realtime.packb(obj)
    row = {"op": "encode (dict → msgpack)", "payload": name, "ours_us": per_call_us(lambda: fal_realtime.packb(obj))}
    if msgpack:
        assert msgpack.packb(obj, use_bin_type=True) == ours
        row["msgpack_us"] = per_call_us(lambda: msgpack.packb(obj, use_bin_type=True))
    rows.append(row)
    row = {"op": "decode (msgpack → dict)", "payload": name, "ours_us": per_call_us(lambda: fal_realtime.unpackb(ours))}
    if msgpack:
        assert msgpack.unpackb(ours, raw=False) == fal_realtime.unpackb(ours)
        row["msgpack_us"] = per_call_us(lambda: msgpack.unpackb(ours, raw=False))
    rows.append(row)
print(json.dumps(rows))
