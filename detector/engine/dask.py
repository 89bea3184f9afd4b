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

import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

from detector.engine.local import _warm_up, default_workers, run_partition
from detector.errors import DetectorError


def _task(partition, source, options):
    return run_partition(source, partition, *options)


def dask_mapper(scheduler: str | None, workers: int | None) -> Callable[..., Iterator]:
    """A mapper for :func:`detector.engine.local.run_kernel` that runs on a Dask cluster."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise DetectorError(
            "the dask engine needs dask.distributed: pip install 'logsentinel[dask]'"
        ) from None

    def mapper(source: Any, partitions: list, options: tuple, _workers: int) -> Iterator:
        cluster = None
        try:
            if scheduler is None:
                with dask.config.set(
                    {"distributed.worker.multiprocessing-method": _start_method()}
                ):
                    cluster = LocalCluster(
                        n_workers=workers or default_workers(),
                        threads_per_worker=1,
                        processes=True,
                        # A free port: None still binds the scheduler's HTTP server to 8787,
                        # which another cluster on the machine may hold (a warning each run).
                        dashboard_address=":0",
                    )
                client = Client(cluster)
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
            _warm_up()
            for future in futures:  # in partition order, as the local engine yields them
                yield future.result()
                future.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    return mapper


def _start_method() -> str:
    """How the local cluster's worker processes start: forked where the system can (they
    begin with this process's modules: detector, pandas, pyarrow), as the local engine's
    pool does. Spawned, each imported them again on its first task, and starting and
    stopping the cluster took seconds more (under load: 4.1 s more to start, 5-8 s for
    the first tasks, 3.6 s more to stop)."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
