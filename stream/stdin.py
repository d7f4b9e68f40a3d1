"""Reading the input from stdin.

The first bytes are looked at before FFmpeg opens the stream, to stop at once on an mp4
whose index is at its end (a pipe cannot seek back to its media). Then the stream goes
to FFmpeg through a pipe of our own that FFmpeg reads with its pipe protocol, as ffmpeg
reads stdin: that keeps enough of what it read to seek back over a damaged region and
resync, which PyAV's reading through a Python file object cannot. Reads are unbuffered:
a live input is decoded as it arrives (and Ctrl-C finds every frame sent so far).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
from typing import BinaryIO

from stream.errors import InputError

# Bytes of stdin looked at before opening, to reject an mp4 whose index is at the end.
MP4_PEEK_BYTES = 1 << 16
# Bytes read from stdin at once by the thread that hands them to FFmpeg.
RELAY_CHUNK = 1 << 20


class _FdReader:
    """The file descriptor under stdin, read without Python's buffer."""

    def __init__(self, fd: int):
        self.fd = fd

    def read(self, n: int) -> bytes:
        try:
            return os.read(self.fd, n)
        except OSError as err:
            raise InputError(f"cannot read stdin: {err.strerror}") from err


class _ReplayReader(io.RawIOBase):
    """Reads ``head`` first, then the rest of ``stream``: lets us peek at a pipe."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer)) or b""
        buffer[: len(data)] = data
        return len(data)


def mp4_index_at_end(head: bytes) -> bool:
    """True when the top-level boxes show media data before the index (``moov``).

    Such a file needs seeking, which a pipe cannot do. Fragmented mp4 (``moof``) and
    files with ``moov`` first are fine.
    """
    pos = 0
    while pos + 8 <= len(head):
        size, kind = struct.unpack(">I4s", head[pos : pos + 8])
        if kind in (b"moov", b"moof"):
            return False
        if kind == b"mdat":
            return True
        if size == 1 and pos + 16 <= len(head):
            size = struct.unpack(">Q", head[pos + 8 : pos + 16])[0]
        if size < 8:
            return False
        pos += size
    return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _relay_stdin(fd: int, head: bytes) -> int:
    """A pipe that carries ``head`` and then the rest of ``fd``; returns its read end.

    FFmpeg reads the pipe with its own pipe protocol, as ffmpeg reads stdin: that keeps
    enough of what it read to seek back over a damaged region and resync, which PyAV's
    reading through a Python file object cannot. A daemon thread copies (no lock held
    while it waits on a pipe whose writer is slow)."""
    read_end, write_end = os.pipe()

    def copy() -> None:
        try:
            _write_all(write_end, head)
            while data := os.read(fd, RELAY_CHUNK):
                _write_all(write_end, data)
        except OSError:  # the reader closed its end, or stdin failed: the input ends
            pass
        finally:
            os.close(write_end)

    threading.Thread(target=copy, name="stdin-relay", daemon=True).start()
    return read_end


def _read_head(stream: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        data = stream.read(n - got) or b""
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def stdin_target(stdin: BinaryIO | None = None) -> tuple[str | io.RawIOBase, int | None]:
    """What to hand ``av.open`` for stdin (or for ``stdin``, a file object), and the pipe
    FFmpeg reads, which the caller closes after the container (None for a file object)."""
    stream = stdin if stdin is not None else _FdReader(sys.stdin.fileno())
    head = _read_head(stream, MP4_PEEK_BYTES)
    if not head:
        raise InputError("no input on stdin: nothing was piped in")
    if head[4:8] == b"ftyp" and mp4_index_at_end(head):
        raise InputError(
            "the mp4 on stdin has its index at the end, which cannot be read from a pipe; "
            "pipe a streamable format instead (e.g. `ffmpeg -i in.mp4 -c copy -f nut -` or "
            "`-f matroska -`), remux with `-movflags +faststart`, or pass the file path"
        )
    if isinstance(stream, _FdReader):
        pipe_fd = _relay_stdin(stream.fd, head)
        return f"pipe:{pipe_fd}", pipe_fd
    return _ReplayReader(head, stream), None
