"""Ray for `remaster batch` and `--workers`: a local Ray on loopback, or a cluster by address.

Ray is imported here only, and only when one of those asks for it (the optional extra
``remaster[cluster]``). Without ``--address`` the command starts its own Ray on this
machine and stops it at the end. An exposed Ray head runs code for anyone who reaches
it, so that Ray listens on 127.0.0.1 only and starts no dashboard: Ray binds to the
machine's network address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the
environment when it is imported (measured with Ray 2.60: with it, every socket of the
Ray processes is on 127.0.0.1; it also refuses other nodes, which a local run does not
need). A cluster is joined only when ``--address`` names it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stream.chain import on_sigint
from stream.errors import DeviceError, ModelError, RemasterError

if TYPE_CHECKING:
    from stages.base import HoleFill
    from stream.options import Options

log = logging.getLogger(__name__)

LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Ray sets OMP_NUM_THREADS to a task's CPUs (1 for an actor) where the environment does
# not: torch on a CPU would then run single-threaded, and its float sums come out in
# another order than in a plain `remaster` process (measured: the tiny diffusion fill
# differed by up to 3 levels). Tasks take these variables as the driver has them.
THREAD_VARS = ("OMP_NUM_THREADS",)


def thread_env() -> dict[str, str | None]:
    """The driver's thread settings (None: not set), for :func:`use_env` in a task."""
    return {name: os.environ.get(name) for name in THREAD_VARS}


def use_env(env: dict[str, str | None]) -> None:
    """In a Ray task, before anything that starts thread pools is imported: the variables
    as ``env`` has them (None: unset), so libraries choose as in a plain process."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def import_ray(local: bool) -> Any:
    """The ``ray`` module; for a ``local`` start, imported with the loopback-only setting."""
    if local:
        if "ray" in sys.modules and _multi_node(sys.modules["ray"]):
            raise RemasterError(
                "ray was imported before remaster could make it listen on loopback only; "
                "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment"
            )
        os.environ.update(LOOPBACK_ONLY)
    try:
        import ray
    except ImportError as err:
        raise ModelError(
            f"batch and --workers need Ray: pip install 'remaster[cluster]' ({err})"
        ) from err
    return ray


def _multi_node(ray: Any) -> bool:
    from ray._private import ray_constants

    return bool(ray_constants.ENABLE_RAY_CLUSTER)


@contextlib.contextmanager
def connect(address: str | None, cpus: int | None = None) -> Iterator[Any]:
    """Ray, ready: the cluster at ``address``, else a Ray of ``cpus`` CPUs (default: all)
    started here on loopback and stopped on leaving. A Ray already running in this
    process (a library caller's, a test's) is used as it is and left running."""
    ray = import_ray(local=address is None)
    if ray.is_initialized():
        yield ray
        return
    quiet = logging.WARNING if logging.getLogger().level <= logging.DEBUG else logging.ERROR
    logging.getLogger("ray").setLevel(quiet)  # its start-up notes are not ours to show
    try:
        if address is None:
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=quiet,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=quiet)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RemasterError(f"cannot start or join {where}: {err}") from err
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def sigint_flag() -> Iterator[threading.Event]:
    """An event that Ctrl-C sets while inside, in place of a KeyboardInterrupt: one raised
    inside Ray's own wait can be lost or come out as a SystemError (seen with Ray 2.60
    on a loaded machine), so a driver loop checks this flag between its short waits.
    Off the main thread (no signal handler can be set there) the flag is never set."""
    flag = threading.Event()
    with on_sigint(lambda *_: flag.set()):
        yield flag


def cpus(ray: Any) -> int:
    """CPUs the cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def hole_fill(ray: Any, options: Options) -> HoleFill | None:
    """With ``--fill sd``: one fill server per GPU of the cluster (a persistent pipeline
    each, :mod:`gpu.actors`) and the hole fill that sends scenes to them; else None (each
    worker makes its own fill)."""
    if options.fill_name != "sd":
        return None
    import functools

    from gpu.actors import ActorFill, start_fill_servers
    from stream import wiring

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if not gpus and not options.allow_cpu:
        raise DeviceError(
            "--fill sd needs a GPU in the Ray cluster; none is there: pass --allow-cpu to "
            "run it on a CPU (minutes per tile), or use --fill panorama"
        )
    make = functools.partial(wiring.make_hole_fill, options)
    servers = start_fill_servers(ray, make, gpus, thread_env())
    return ActorFill(servers)
