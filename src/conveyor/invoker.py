"""The invoker: runs one handler for the worker, the way the handler asks to be run.

An async handler runs on the event loop, a sync one on the handler threads; a transactional one
runs with ``fn_job_complete`` in one transaction on a pooled connection (opened on first use),
so its effects and its completion commit together or not at all. A thread cannot be killed:
cancelling a sync handler sets its context's cancel signal and leaves it to stop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor import db, jobs, tracing
from conveyor.calls import acall, call
from conveyor.handlers import Handler, JobContext


class Invoker:
    """Runs handlers with up to *concurrency* threads and pooled transactional connections."""

    def __init__(self, url: str, name: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self._application_name = f"conveyor-worker-tx:{name}"[:63]
        self._threads = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="conveyor-handler"
        )
        self._async_pool: AsyncConnectionPool | None = None
        self._sync_pool: ConnectionPool | None = None

    @tracing.traced_invoke
    async def invoke(self, handler: Handler, context: JobContext) -> Any:
        """The handler's result; raises what it raises, TimeoutError past its timeout."""
        runner = self._run_transactional if handler.transactional else self._run_plain
        if handler.timeout is None:
            return await runner(handler, context)
        async with asyncio.timeout(handler.timeout):  # in the job's task: no task of its own
            return await runner(handler, context)

    async def close(self) -> None:
        """Stop taking work (running threads finish on their own) and close the pools."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._async_pool is not None:
            await self._async_pool.close()
        if self._sync_pool is not None:
            self._sync_pool.close()

    async def _run_plain(self, handler: Handler, context: JobContext) -> Any:
        if handler.is_async:
            return await handler.func(context)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, handler.func, context)
        except asyncio.CancelledError:
            context._cancel()  # the thread cannot be killed: ask it to stop
            raise

    async def _run_transactional(self, handler: Handler, context: JobContext) -> Any:
        """Run the handler and fn_job_complete in one transaction on a pooled connection."""
        job = context.job
        if handler.is_async:
            pool = await self._get_async_pool()
            async with pool.connection() as conn, conn.transaction():
                context.conn = conn
                result = await handler.func(context)
                await acall(conn, *jobs.complete_statement(job.job_id, job.lease_token, result))
                return result
        pool_sync = self._get_sync_pool()

        def run_in_thread() -> Any:
            with pool_sync.connection() as conn, conn.transaction():
                context.conn = conn
                result = handler.func(context)
                if context.cancelled:
                    raise asyncio.CancelledError("job cancelled")
                call(conn, *jobs.complete_statement(job.job_id, job.lease_token, result))
                return result

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, run_in_thread)
        except asyncio.CancelledError:
            context._cancel()
            raise

    async def _get_async_pool(self) -> AsyncConnectionPool:
        if self._async_pool is None:
            self._async_pool = AsyncConnectionPool(self.url, open=False, **self._pool_options(True))
            await self._async_pool.open()
        return self._async_pool

    def _get_sync_pool(self) -> ConnectionPool:
        if self._sync_pool is None:
            self._sync_pool = ConnectionPool(self.url, open=True, **self._pool_options(False))
        return self._sync_pool

    def _pool_options(self, asynchronous: bool) -> dict[str, Any]:
        return {
            "min_size": 0,
            "max_size": self.concurrency,
            **db.pool_options(self._application_name, asynchronous=asynchronous),
        }
