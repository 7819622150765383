"""Run statistics and the progress display: a live line on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO


def fmt_duration(seconds: float) -> str:
    """1h02m, 5m03s, 42s."""
    s = int(max(0, seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Prints done/total, req/s, tokens/s, retries, 429s, dead letters and ETA."""

    def __init__(self, counters: Counter[str], *, mode: str = "auto", interval: float = 10.0,
                 stream: TextIO | None = None) -> None:
        self.counters = counters
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode = mode
        self.interval = 0.5 if mode == "bar" else interval
        self.total: int | None = None
        self._t0 = time.monotonic()
        self._last = (self._t0, 0, 0)  # time, requests, tokens
        self._line_len = 0

    def line(self) -> str:
        c = self.counters
        now = time.monotonic()
        t, req, tok = self._last
        toks = c["prompt_tokens"] + c["completion_tokens"]
        dt = max(1e-6, now - t)
        rps = (c["requests"] - req) / dt
        tps = (toks - tok) / dt
        self._last = (now, c["requests"], toks)
        done = c["inputs_done"]
        total = f"/{self.total}" if self.total else ""
        parts = [f"inputs {done}{total}", f"personas {c['accepted']}", f"{rps:.1f} req/s", f"{tps:.0f} tok/s",
                 f"retries {c['retries']}", f"429s {c['rate_limited']}", f"dead {c['dead']}"]
        samples = sum(v for k, v in c.items() if k.startswith("task."))
        if samples:
            parts.insert(2, f"samples {samples}")
        if self.total and done:
            elapsed = now - self._t0
            left = max(0, self.total - done)
            eta = fmt_duration(elapsed / max(1, done - self._start_done) * left) if done > self._start_done else "?"
            parts.append(f"ETA {eta}")
        return " | ".join(parts)

    _start_done = 0

    def note(self, text: str) -> None:
        """A one-off line (what the run does before its work starts), time-stamped."""
        self.stream.write(time.strftime("%H:%M:%S ") + text + "\n")
        self.stream.flush()

    def begin(self) -> None:
        self._start_done = self.counters["inputs_done"]

    def tick(self) -> None:
        if self.mode == "off":
            return
        text = self.line()
        if self.mode == "bar":
            pad = max(0, self._line_len - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._line_len = len(text)
        else:
            self.stream.write(time.strftime("%H:%M:%S ") + text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.mode == "bar" and self._line_len:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
            self._line_len = 0
