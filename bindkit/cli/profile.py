"""``--profile``: where a command's wall time goes (phases timed in the process, plus interpreter start-up).

Not a subcommand (``bindkit.cli`` registers only the modules it lists). Imports nothing heavy."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere), to time interpreter start-up."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Profile:
    """Times named phases; :meth:`report` prints them, the start-up before the command ran and the total."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.phases: list[tuple[str, float]] = []
        age = process_age() if enabled else None
        self._startup = age
        self._t0 = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases.append((name, time.perf_counter() - start))

    def report(self, file=None) -> None:
        """The breakdown on stderr (``--json`` output on stdout stays clean)."""
        if not self.enabled:
            return
        out = file or sys.stderr
        ran = time.perf_counter() - self._t0
        rows = []
        if self._startup is not None:
            rows.append(("interpreter + CLI start-up", self._startup))
        rows += self.phases
        other = ran - sum(s for _, s in self.phases)
        rows.append(("other (printing, closing)", max(other, 0.0)))
        total = ran + (self._startup or 0.0)
        print("profile:", file=out)
        for name, s in rows:
            print(f"  {name:28} {s:8.3f} s  {100 * s / total:5.1f} %", file=out)
        print(f"  {'total':28} {total:8.3f} s", file=out)
