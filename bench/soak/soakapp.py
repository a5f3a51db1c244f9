"""The soak's handler: a transactional effect row per job, so duplicates would be visible."""

from __future__ import annotations

from conveyor.handlers import JobContext, Registry

registry = Registry()


@registry.handler("soak.effect", transactional=True)
def effect(job: JobContext) -> None:
    job.conn.execute(
        "INSERT INTO public.soak_effect (job_id, seq) VALUES (%s, %s)",
        (job.job.job_id, job.payload["seq"]),
    )
