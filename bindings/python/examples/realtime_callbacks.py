"""Callback style, as fal.realtime.connect() in fal's JS client: lazy connect,
throttled sends (the latest input of a burst always goes out), reconnect on
the next send after any close. Callbacks run on a library thread.

    FAL_KEY=... python realtime_callbacks.py fal-ai/fast-lcm-diffusion
    # against the local emulator (`fal-realtime serve --port 8080`):
    FAL_RUN_HOST=ws://127.0.0.1:8080 FAL_REST_URL=http://127.0.0.1:8080 FAL_KEY=test-key python realtime_callbacks.py
"""

import sys
import threading

import fal_realtime

done = threading.Event()


def on_result(result: dict) -> None:
    print("result:", sorted(result))
    if result.get("seed") == 9:
        done.set()


def on_error(error: fal_realtime.FalRealtimeError) -> None:
    print("error:", error)
    done.set()


app = sys.argv[1] if len(sys.argv) > 1 else "demo/echo"
client = fal_realtime.Client()  # FAL_KEY, FAL_RUN_HOST, FAL_REST_URL
with client.connect(app, on_result=on_result, on_error=on_error, on_state=print) as conn:
    for seed in range(10):  # e.g. a slider moving: intermediate inputs may be skipped
        conn.send({"prompt": "a photo of a fox", "seed": seed})
    done.wait(30)
    print(conn.stats)
