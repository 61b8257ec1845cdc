"""asyncio style: await send / recv, async for, many connections at once.

    FAL_KEY=... python realtime_async.py fal-ai/fast-lcm-diffusion
    EMULATOR=127.0.0.1:8080 python realtime_async.py
"""

import asyncio
import os
import sys

import fal_realtime


def client() -> fal_realtime.Client:
    host = os.environ.get("EMULATOR")
    if host:
        return fal_realtime.Client(
            key="test-key", run_host=f"ws://{host}", rest_url=f"http://{host}", allow_insecure_ws=True
        )
    return fal_realtime.Client()


async def main(app: str) -> None:
    c = client()
    async with c.realtime_async(app) as conn:
        await conn.send({"prompt": "a photo of a dog", "seed": 1})
        result = await conn.recv(timeout=30)
        print("first:", sorted(result) if result else result)

    async def one(seed: int) -> int:
        async with c.realtime_async(app) as conn:
            await conn.send({"prompt": "a bird", "seed": seed})
            await conn.recv(timeout=30)
            return seed

    print("parallel:", await asyncio.gather(*(one(s) for s in range(4))))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "demo/echo"))
