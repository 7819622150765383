"""Read the records of an output file from its complete zstd frames only.

A run seals each flush as one frame, so a file being written may end in a frame that is
not finished yet. `engine.io.sinks.iter_records` decodes such a frame's prefix (and then
fails on its cut line); the report must count durable records only, so this reader
decodes frame by frame and keeps a frame's lines only once the frame has ended (a frame too
large to be a live one, from a finished and compacted file, is passed on as it decodes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import zstandard

CHUNK = 1 << 20
#: A run seals a frame at about 1 MiB (ZstdJsonlSink.frame_bytes); a frame that decodes to
#: more is a finished file compacted into one frame (engine/io/compact.py), never one being
#: written, so its lines are passed on as they decode instead of held until the frame ends.
HOLD_LIMIT = 8 << 20


class FrameReader:
    """Iterate the JSON records of a .jsonl.zst (or .jsonl) file; complete frames only.

    After iteration, `tail_bytes` is the size of an unfinished last frame (or line) that
    was left out, `bad_lines` counts lines that were not a JSON object, and `error`
    names corrupt data, where reading stopped.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records = 0
        self.tail_bytes = 0
        self.bad_lines = 0
        self.error = ""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.path.name.endswith(".zst"):
            yield from self._zst()
        else:
            yield from self._plain()

    def _lines(self, data: bytes) -> Iterator[dict[str, Any]]:
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = msgspec.json.decode(line)
            except msgspec.DecodeError:
                self.bad_lines += 1
                continue
            if not isinstance(rec, dict):
                self.bad_lines += 1
                continue
            self.records += 1
            yield rec

    def _zst(self) -> Iterator[dict[str, Any]]:
        dctx = zstandard.ZstdDecompressor()
        dobj = dctx.decompressobj()
        frame = bytearray()  # the current frame's output, kept until the frame ends
        fed = 0  # compressed bytes fed into the current frame
        with open(self.path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                data = chunk
                while data:
                    try:
                        frame += dobj.decompress(data)
                    except zstandard.ZstdError as e:
                        self.error = f"corrupt zstd data: {e}"
                        self.tail_bytes = fed + len(data) + _rest(fh)
                        return
                    if not dobj.eof:
                        fed += len(data)
                        if len(frame) > HOLD_LIMIT:
                            cut = frame.rfind(b"\n") + 1
                            yield from self._lines(bytes(frame[:cut]))
                            del frame[:cut]
                        break
                    data = dobj.unused_data
                    yield from self._lines(bytes(frame))
                    frame.clear()
                    fed = 0
                    dobj = dctx.decompressobj()
        self.tail_bytes = fed

    def _plain(self) -> Iterator[dict[str, Any]]:
        pending = b""
        with open(self.path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                pending += chunk
                cut = pending.rfind(b"\n")
                if cut >= 0:
                    yield from self._lines(pending[:cut])
                    pending = pending[cut + 1 :]
        self.tail_bytes = len(pending)  # a line without its newline may still be being written


def _rest(fh: Any) -> int:
    here = fh.tell()
    end = fh.seek(0, 2)
    return int(end - here)
