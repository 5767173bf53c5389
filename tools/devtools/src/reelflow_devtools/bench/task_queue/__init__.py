"""The task-queue baseline: reelflow's job done the straightforward way, for ``make bench``.

What reelflow's throughput is measured against, "a straightforward task-queue
implementation of the same job" that it must beat twice over: an HTTP endpoint
that inserts one project document with its clips and publishes one submit task
per clip; workers that
submit each clip to Runware, then poll it with a task that reschedules itself on
the Runware SDK's schedule (1 s, then 0.5 s x1.5, capped at 10 s) through
per-queue-TTL wait queues; and, when the task ends, one update of the clip in the
project document (``$set`` its fields, ``$inc`` the counts). Written as a
competent engineer would in an afternoon, on FastAPI, aio-pika, pymongo and
aiohttp and Runware's wire protocol: nothing of reelflow's own libraries but the
loop its workers run on (``lifecycle.run_service``: uvloop, as reelflow's). What it
leaves out (leases, fair share, a reconciler, ...) is in docs/BENCHMARKS.md,
"The task-queue baseline".

``python -m reelflow_devtools.bench.task_queue api|worker``, configured by ``TQ_*``
variables (:class:`.config.Config`); :mod:`reelflow_devtools.bench.task_queue_run` starts it.
"""
