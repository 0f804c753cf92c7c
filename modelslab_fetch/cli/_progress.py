"""The progress view of a batch: a live line on a terminal, plain lines elsewhere."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from typing import Literal, TextIO

from .._batch import Progress

__all__ = ["ProgressView", "ViewMode", "choose_mode"]

ViewMode = Literal["live", "plain", "json", "quiet"]


def choose_mode(stream: TextIO, *, quiet: bool, as_json: bool) -> ViewMode:
    """Quiet or JSON if asked; a live line on a terminal; periodic plain lines otherwise."""
    if quiet:
        return "quiet"
    if as_json:
        return "json"
    return "live" if stream.isatty() else "plain"


class ProgressView:
    """Shows done, failed, in flight, rate and time left of a batch, as it runs.

    `update()` takes each `Progress` event; `tick()` redraws on a timer, so rate and
    time left move even while nothing finishes; `finish()` draws the last state.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        mode: ViewMode,
        total: int | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._mode = mode
        self._total = total
        self._interval = interval if interval is not None else (0.1 if mode == "live" else 5.0)
        self._clock = clock
        self._started = clock()
        self._last_drawn = -float("inf")
        self._progress = Progress(succeeded=0, failed=0, in_flight=0, total=total)

    def __repr__(self) -> str:
        return f"ProgressView(mode={self._mode!r})"

    @property
    def progress(self) -> Progress:
        """The latest counts."""
        return self._progress

    def update(self, progress: Progress) -> None:
        """Take a new `Progress`; redraw if the last drawing is old enough."""
        total = progress.total if progress.total is not None else self._total
        self._progress = Progress(progress.succeeded, progress.failed, progress.in_flight, total)
        self.tick()

    def tick(self) -> None:
        """Redraw if the last drawing is older than the interval."""
        now = self._clock()
        if now - self._last_drawn >= self._interval:
            self._draw(now, final=False)

    def finish(self) -> None:
        """Draw the final state (and end the live line)."""
        self._draw(self._clock(), final=True)

    def _draw(self, now: float, *, final: bool) -> None:
        self._last_drawn = now
        if self._mode == "quiet":
            return
        elapsed = max(now - self._started, 1e-9)
        progress = self._progress
        rate = progress.done / elapsed
        if self._mode == "json":
            event = {
                "event": "finished" if final else "progress",
                "succeeded": progress.succeeded,
                "failed": progress.failed,
                "in_flight": progress.in_flight,
                "total": progress.total,
                "rate_per_s": round(rate, 2),
                "elapsed_s": round(elapsed, 2),
            }
            self._stream.write(json.dumps(event) + "\n")
        elif self._mode == "live":
            width = shutil.get_terminal_size((100, 20)).columns - 1
            line = self._line(progress, rate, elapsed)[:width]
            self._stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self._stream.write(self._line(progress, rate, elapsed) + "\n")
        self._stream.flush()

    @staticmethod
    def _line(progress: Progress, rate: float, elapsed: float) -> str:
        total = progress.total
        done = f"{progress.done}/{total}" if total is not None else f"{progress.done}"
        parts = [
            f"{done} done",
            f"{progress.failed} failed",
            f"{progress.in_flight} in flight",
            f"{rate:.1f}/s",
        ]
        if total is not None and progress.done < total and rate > 0:
            parts.append(f"~{(total - progress.done) / rate:.0f}s left")
        else:
            parts.append(f"{elapsed:.1f}s")
        bar = ""
        if total:
            filled = int(20 * progress.done / total)
            bar = "[" + "#" * filled + "." * (20 - filled) + "] "
        return bar + " · ".join(parts)
