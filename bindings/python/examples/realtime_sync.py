"""Blocking style, as fal_client.realtime(): send inputs, read results.

    FAL_KEY=... python realtime_sync.py fal-ai/fast-lcm-diffusion
    # against the local emulator (`fal-realtime serve --port 8080`):
    FAL_RUN_HOST=ws://127.0.0.1:8080 FAL_REST_URL=http://127.0.0.1:8080 FAL_KEY=test-key python realtime_sync.py
"""

import sys

import fal_realtime

app = sys.argv[1] if len(sys.argv) > 1 else "demo/echo"
client = fal_realtime.Client()  # FAL_KEY, FAL_RUN_HOST, FAL_REST_URL, like fal_client

with client.realtime(app) as conn:
    for seed in range(3):
        conn.send({"prompt": "a photo of a cat", "seed": seed})
        result = conn.recv(timeout=30)
        print(seed, sorted(result) if result else result)
    print(conn.stats)
