#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (a handful of small files each).

Run from anywhere: python3 fuzz/seeds/generate.py. No third-party modules: the
tiny msgpack writer below covers what the seeds use.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def mp(v):
    """msgpack encoding of None/bool/int/float/str/bytes/list/dict (dict keys in order)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        if 0 <= v <= 0xFF:
            return b"\xcc" + bytes([v])
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) <= 0xFF:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))
        return head + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))
        return head + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(type(v))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


FRAMES = {
    "result": {"request_id": "req-1", "images": [{"url": "https://x/y.png", "width": 512}], "seed": 42},
    "timings": {"type": "x-fal-message", "action": "timings", "timing": 0.012},
    "timeout": {"type": "x-fal-error", "error": "TIMEOUT", "reason": "no inputs, reconnect when needed!"},
    "server_error": {"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": "boom", "request_id": "r2"},
    "unauthorized": {"status": "error", "error": "Unauthorized"},
}

for name, frame in FRAMES.items():
    write("classify", name + ".msgpack", mp(frame))
    write("json_msgpack", name + ".json", json.dumps(frame))
write("classify", "timeout.json", json.dumps(FRAMES["timeout"]))
write("classify", "unauthorized.json", json.dumps(FRAMES["unauthorized"]))
# Every msgpack family once: bin, ext, f32, negative, u64, nil key, long str.
write(
    "classify",
    "types.msgpack",
    b"\x87"
    + mp("bin") + b"\xc4\x03abc"
    + mp("ext") + b"\xd6\x05\x01\x02\x03\x04"
    + mp("f32") + b"\xca\x3f\xc0\x00\x00"
    + mp("neg") + mp(-70000)
    + mp("big") + mp(2**64 - 1)
    + b"\xc0" + mp([True, False])
    + mp("timing") + mp("x" * 40),
)
# Deep nesting, near the scanner's and the decoder's limits.
write("classify", "deep.msgpack", b"\x91" * 500 + b"\xc0")
write("json_msgpack", "types.json", '{"a":[1,-2,3.5,null,true,"s\\u00e9\\n"],"u":18446744073709551615,"i":-9223372036854775808,"e":1e300}')
write("json_msgpack", "types.msgpack", mp({"bin": b"\x00\x01", "f": 1.5, "n": None, "l": [1, [2, [3]]]}))

# endpoint: flags byte, then app, path, scheme, host, token, max_buffering, raw (see fuzz_targets/endpoint.rs).
for name, fields in {
    "lcm": ("\x0e", "fal-ai/fast-lcm-diffusion", "", "wss", "fal.run", "abcDEF123456", "5", ""),
    "legacy": ("\x07", "123-myapp", "///ws/x", "ws", "127.0.0.1:8080", "a b&c=d", "", "123/myapp/realtime"),
    "workflows": ("\x0b", "workflows/owner/app/sub", "realtime", "wss", "fal.run", "", "60", "o/a b"),
    "comfy": ("\x02", "comfy/me/graph/realtime", "", "wss", "ws.fal.run", "", "0", "wss://h/a?fal_jwt_token=SECRET&max_buffering=3"),
}.items():
    write("endpoint", name, "\n".join(fields))

write("token_response", "string.json", '"eyJhbGciOiJIUzI1NiJ9.e30.sig"')
write("token_response", "token.json", '{"token":"t0ken-1","token_type":"Bearer"}')
write("token_response", "detail.json", '{"detail":"legacy-token"}')
write("token_response", "escaped.json", '{"token":"a\\u0062c\\/d","detail":"x"}')
write("token_response", "error.json", '{"detail":[{"loc":["body"],"msg":"field required"}]}')
