"""The Dask engine: the same partition function, mapped on a ``dask.distributed`` cluster.

Nothing here computes a feature: each task is
:func:`detector.engine.local.run_partition` on one partition, exactly as the
local engine runs it; the client receives the small aggregates and assembles
the account-day table itself. Without a scheduler address, a ``LocalCluster``
of ``workers`` single-threaded processes is started for the run.

Workers read the partitions themselves: the log's paths must be readable by
every worker under the same name (a shared file system, or a URL such as
``s3://``: see :mod:`detector.engine.storage`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from detector.engine.local import (
    default_workers,
    import_model_stage,
    in_background,
    reuse_freed_memory,
    run_partition,
)
from detector.errors import DetectorError


def _task(partition, source, options):
    return run_partition(source, partition, *options)


def _close(client: Any, cluster: Any) -> None:
    try:
        client.close()
        if cluster is not None:
            cluster.close()
    except Exception:  # noqa: BLE001 - the run's results are in: a failing stop changes nothing
        pass


def dask_mapper(scheduler: str | None, workers: int | None) -> Callable[..., Iterator]:
    """A mapper for :func:`detector.engine.local.run_kernel` that runs on a Dask cluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DetectorError(
            "the dask engine needs dask.distributed: pip install 'logsentinel[dask]'"
        ) from None

    def mapper(source: Any, partitions: list, options: tuple, _workers: int) -> Iterator:
        cluster = None
        try:
            if scheduler is None:
                # Workers are spawned (Dask's default), not forked: forking this process,
                # which runs threads (Dask's own IO loop, logging, Arrow's pools), left a
                # worker waiting forever on a lock a thread held at the fork (seen in the
                # suite: a handler's lock in logging).
                cluster = LocalCluster(
                    n_workers=workers or default_workers(),
                    threads_per_worker=1,
                    processes=True,
                    # A free port: None still binds the scheduler's HTTP server to 8787,
                    # which another cluster on the machine may hold (a warning each run).
                    dashboard_address=":0",
                )
                client = Client(cluster)
                # The cluster is this run's: its workers keep their freed heap, as the local
                # engine's do (glibc mapping and unmapping each partition's large arrays
                # afresh made their system time a third of their CPU). Not done to the
                # workers of a cluster given by address: they outlive the run.
                client.run(reuse_freed_memory)
            else:
                client = Client(scheduler, timeout="30s")
        except OSError as error:
            raise DetectorError(f"cannot reach the Dask scheduler {scheduler} ({error})") from None
        try:
            # The source and the broadcast tables go to each worker once, not once per task.
            shared_source = client.scatter(source, broadcast=True)
            shared_options = client.scatter(options, broadcast=True)
            futures = client.map(
                _task, partitions, source=shared_source, options=shared_options, pure=False
            )
            # The model stage's library imported meanwhile, as the local engine does: the
            # workers do the reading, this process only waits.
            import_model_stage()
            for future in futures:  # in partition order, as the local engine yields them
                yield future.result()
                future.release()
        finally:
            # Closed in a thread: the results are all here, and stopping a local cluster's
            # spawned workers takes a second or more, which assembly need not wait for.
            in_background(lambda: _close(client, cluster))

    return mapper
