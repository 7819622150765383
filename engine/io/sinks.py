"""zstd-compressed JSON Lines sinks written in complete frames.

Each flush compresses the buffered lines into one zstd frame, so `zstd -dc`, pandas and
DuckDB read every flushed record while a run is still writing. The byte offset after a
frame is what a checkpoint records; resume truncates the file back to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import zstandard

_ENCODER = msgspec.json.Encoder()


class ZstdJsonlSink:
    """An append-only .jsonl.zst file; `write` buffers, `flush` seals a frame."""

    def __init__(self, path: Path, *, level: int = 3, frame_bytes: int = 1 << 20) -> None:
        self.path = path
        self.frame_bytes = frame_bytes
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._buf = bytearray()
        self._fh = open(path, "ab")  # noqa: SIM115 - lives as long as the sink
        self.offset = self._fh.seek(0, os.SEEK_END)
        self.records = 0  # records written through this object (not counting earlier runs)
        if self.offset == 0:
            self.truncate(0)

    def write(self, record: Any) -> None:
        """Buffer one record (a msgspec Struct or plain data) as a JSON line."""
        _ENCODER.encode_into(record, self._buf, len(self._buf))
        self._buf += b"\n"
        self.records += 1
        if len(self._buf) >= self.frame_bytes:
            self.flush()

    def flush(self) -> None:
        """Compress the buffer into one complete frame and hand it to the OS."""
        if not self._buf:
            return
        frame = self._cctx.compress(bytes(self._buf))
        self._buf.clear()
        self._fh.write(frame)
        self._fh.flush()
        self.offset += len(frame)

    def sync(self) -> int:
        """Flush and fsync; returns the durable offset (a frame boundary)."""
        self.flush()
        os.fsync(self._fh.fileno())
        return self.offset

    def truncate(self, offset: int) -> None:
        """Cut the file back to a checkpointed frame boundary (drops unflushed lines too)."""
        self._buf.clear()
        self._fh.flush()
        self._fh.truncate(offset)
        self._fh.seek(offset)
        self.offset = offset
        if offset == 0:
            # an empty frame: a file with no records is still valid zstd for every reader
            frame = self._cctx.compress(b"")
            self._fh.write(frame)
            self._fh.flush()
            self.offset = len(frame)

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if not self._fh.closed:
            self.flush()
            self._fh.close()


def read_records(path: Path, type: Any = None) -> list[Any]:
    """Read every record of a .jsonl.zst file (for tests, reports and small files)."""
    return list(iter_records(path, type))


def iter_records(path: Path, type: Any = None) -> Any:
    """Stream the records of a .jsonl.zst (or plain .jsonl) file."""
    dec = msgspec.json.Decoder(type) if type is not None else msgspec.json.Decoder()
    with open(path, "rb") as fh:
        stream = (zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
                  if str(path).endswith(".zst") else fh)
        pending = b""
        while chunk := stream.read(1 << 20):
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line.strip():
                    yield dec.decode(line)
        if pending.strip():
            yield dec.decode(pending)
