"""Diffusion fills served by Ray actors: one persistent pipeline per GPU, shared by workers.

A :class:`FillServer` actor holds one hole fill (for ``--fill sd`` a fp16 Stable
Diffusion pipeline, loaded once) and fills scenes on request; every worker's panorama
stage is handed an :class:`ActorFill`, a :class:`~stages.base.HoleFill` that sends its
fills to the servers. A fill is seeded per call (tile ``k`` draws from ``seed + k``), so
the result does not depend on which server does it or in what order.

Ray is not imported here: the caller hands in its ``ray`` module.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from stages.base import HoleFill, check_fill_inputs


class FillServer:
    """Holds the hole fill ``make()`` returns and fills on request (run as a Ray actor).
    ``env`` sets (or, for None, unsets) environment variables first: the thread settings
    of the process that would otherwise fill in-process, so the fill computes the same."""

    def __init__(self, make: Callable[[], HoleFill | None], env: dict[str, str | None]):
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        fill = make()
        if fill is None:
            raise ValueError("the fill server was given no hole fill to serve")
        self._fill = fill

    def fill(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        return self._fill(image, known)

    def close(self) -> None:
        self._fill.close()


def start_fill_servers(
    ray: Any,
    make: Callable[[], HoleFill | None],
    gpus: int,
    env: dict[str, str | None] | None = None,
) -> list[Any]:
    """One :class:`FillServer` per GPU (``gpus`` of them), or one on a CPU when there is no
    GPU; each owns its GPU for as long as the job runs. ``env``: see :class:`FillServer`."""
    if gpus > 0:
        actor = ray.remote(num_gpus=1, num_cpus=0)(FillServer)
        return [actor.remote(make, env or {}) for _ in range(gpus)]
    return [ray.remote(num_cpus=0)(FillServer).remote(make, env or {})]


class ActorFill(HoleFill):
    """A hole fill that sends each fill to the next of ``servers`` (Ray actor handles of
    :class:`FillServer`) and hands back a future, as the in-process diffusion fill does."""

    def __init__(self, servers: Sequence[Any]):
        if not servers:
            raise ValueError("ActorFill needs at least one fill server")
        self.servers = list(servers)
        self._next = itertools.count()
        self._lock = threading.Lock()

    def submit(self, image: np.ndarray, known: np.ndarray) -> Future[np.ndarray]:
        check_fill_inputs(image, known)
        with self._lock:
            server = self.servers[next(self._next) % len(self.servers)]
        return server.fill.remote(image, known).future()

    def __call__(self, image: np.ndarray, known: np.ndarray) -> np.ndarray:
        return self.submit(image, known).result()

    def __getstate__(self) -> dict[str, Any]:
        return {"servers": self.servers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["servers"])

    def close(self) -> None:
        """The servers belong to the job that started them; nothing to free here."""
