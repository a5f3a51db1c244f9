"""Several conveyor Workers in one process (the limits tests' "8 workers × 50 slots on 2
processes"): `python multiworker.py --workers 4 --concurrency 50 --queue Q [--poll-interval S]`
runs that many Worker objects of workerapp's registry on one event loop, against
CONVEYOR_DATABASE_URL, until SIGTERM or SIGINT, when each drains as `conveyor worker` does."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from workerapp import registry  # type: ignore[import-not-found,unused-ignore]  # tests/apps

from conveyor.worker import Worker, WorkerConfig


async def main(args: argparse.Namespace) -> None:
    url = os.environ["CONVEYOR_DATABASE_URL"]
    config = WorkerConfig(
        queues=(args.queue,), concurrency=args.concurrency, poll_interval=args.poll_interval
    )
    workers = [Worker(registry, url, config) for _ in range(args.workers)]

    def stop() -> None:
        for worker in workers:
            worker.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    await asyncio.gather(*(worker.run() for worker in workers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--poll-interval", type=float, default=0.02)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
