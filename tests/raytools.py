"""Helpers for the tests that run on a local Ray: the Ray start, sockets, outputs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from stream import cluster

# CPUs of the tests' local Ray: two worker processes, on loopback, one per test module.
TEST_CPUS = 2


def local_ray() -> Iterator[object]:
    """Body of a module-scoped fixture: remaster's own local Ray start, shut down after."""
    with cluster.connect(None, cpus=TEST_CPUS) as ray:
        yield ray


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _children(pid: int) -> set[int]:
    """``pid`` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(parents.get(p, []))
    return found


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # four little-endian words
    return ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs ``pid`` and its descendant processes listen on (TCP)."""
    inodes = set().union(*(_socket_inodes(p) for p in _children(pid)))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ip, port = fields[1].split(":")
                found.add((_address(ip), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def video_frames(path: Path) -> tuple[list[int], list[np.ndarray]]:
    """Every video frame's pts and picture (RGB)."""
    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
        return [f.pts for f in decoded], [f.to_ndarray(format="rgb24") for f in decoded]


def audio_packets(path: Path) -> list[tuple[int | None, bytes]]:
    """Every audio packet's pts and bytes, in the time base of seconds * 1e6."""
    with av.open(str(path)) as c:
        out = []
        for packet in c.demux(audio=0):
            if packet.size:
                us = round(packet.pts * packet.time_base * 1_000_000)
                out.append((us, bytes(packet)))
        return out
