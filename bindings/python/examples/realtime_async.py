"""asyncio style: await send / recv, async for, many connections at once.

    FAL_KEY=... python realtime_async.py fal-ai/fast-lcm-diffusion
    # against the local emulator (`fal-realtime serve --port 8080`):
    FAL_RUN_HOST=ws://127.0.0.1:8080 FAL_REST_URL=http://127.0.0.1:8080 FAL_KEY=test-key python realtime_async.py
"""

import asyncio
import sys

import fal_realtime


async def main(app: str) -> None:
    client = fal_realtime.Client()  # FAL_KEY, FAL_RUN_HOST, FAL_REST_URL
    async with client.realtime_async(app) as conn:
        await conn.send({"prompt": "a photo of a dog", "seed": 1})
        result = await conn.recv(timeout=30)
        print("first:", sorted(result) if result else result)

    async def one(seed: int) -> int:
        async with client.realtime_async(app) as conn:
            await conn.send({"prompt": "a bird", "seed": seed})
            await conn.recv(timeout=30)
            return seed

    print("parallel:", await asyncio.gather(*(one(s) for s in range(4))))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "demo/echo"))
