"""Sampling profiles of a process under load with py-spy (a flame graph SVG)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class FlameRecorder:
    """``py-spy record`` of one pid for ``seconds`` (None: until it exits), to ``output``."""

    def __init__(
        self,
        pid: int,
        seconds: float | None,
        output: Path,
        native: bool = False,
        gil: bool = True,
    ) -> None:
        self.output = output
        exe = py_spy()
        self._proc: subprocess.Popen | None = None
        if exe is None:
            return
        cmd = [exe, "record", "--pid", str(pid)]
        if seconds is not None:
            cmd += ["--duration", str(max(1, int(seconds)))]
        # --gil: only the thread holding the GIL, i.e. Python work (idle pool threads and
        # the metrics server's select() would otherwise fill the graph). Not for processes
        # whose work runs in native threads (ClickHouse in chDB).
        cmd += ["--rate", "50", "--output", str(output), "--format", "flamegraph"]
        if gil:
            cmd.append("--gil")
        # Native stacks need the process paused while sampled; Python-only ones do not.
        cmd.append("--native" if native else "--nonblocking")
        self._log = output.with_suffix(".log")
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 60) -> Path | None:
        """Wait for the recording; the SVG path if one was written."""
        if self._proc is None:
            return None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            self._proc.wait(10)
        return self.output if self.output.exists() else None
