"""Blocking style, as fal_client.realtime(): send inputs, read results.

    FAL_KEY=... python realtime_sync.py fal-ai/fast-lcm-diffusion
    EMULATOR=127.0.0.1:8080 python realtime_sync.py   # `fal-realtime serve --port 8080`
"""

import os
import sys

import fal_realtime


def client() -> fal_realtime.Client:
    host = os.environ.get("EMULATOR")  # a local emulator instead of fal.ai
    if host:
        return fal_realtime.Client(
            key="test-key", run_host=f"ws://{host}", rest_url=f"http://{host}", allow_insecure_ws=True
        )
    return fal_realtime.Client()  # credentials from FAL_KEY, like fal_client


app = sys.argv[1] if len(sys.argv) > 1 else "demo/echo"

with client().realtime(app) as conn:
    for seed in range(3):
        conn.send({"prompt": "a photo of a cat", "seed": seed})
        result = conn.recv(timeout=30)
        print(seed, sorted(result) if result else result)
    print(conn.stats)
