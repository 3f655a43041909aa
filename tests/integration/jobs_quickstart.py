"""The quickstart of docs/jobs.md as data: its files, commands and expected output.

Shared by the test that runs the quickstart as written and the new-user test that runs
apps instrumented the same way. The per-framework virtualenvs come from ``make frameworks``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "jobs.md"
VENVS = ROOT / ".venvs"
_BLOCK = re.compile(r"```(python|sh)\n# quickstart(?: (\w+))?: (\S+)\n(.*?)```", re.DOTALL)
_OUTPUT = re.compile(r"```text\n(event::.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Quickstart:
    """The blocks for one framework: files to write, the worker command, the stack lines."""

    files: dict[str, str]
    worker: str
    stack: list[str]
    output: list[str]


def quickstart(framework: str) -> Quickstart:
    """The quickstart's blocks that apply to ``framework`` (shared ones included)."""
    text = DOC.read_text()
    files: dict[str, str] = {}
    commands: dict[str, str] = {}
    for kind, owner, name, body in _BLOCK.findall(text):
        if owner not in ("", framework):
            continue
        if kind == "python":
            files[name] = body
        else:
            commands[name] = body
    worker_lines = [line for line in commands["worker"].splitlines() if line.strip()]
    assert len(worker_lines) == 1, worker_lines
    stack = [line for line in commands["stack"].splitlines() if line.startswith("export ")]
    [output] = _OUTPUT.findall(text)
    return Quickstart(files, worker_lines[0], stack, output.strip().splitlines())


def venv_bin(framework: str) -> Path:
    """``.venvs/<framework>/bin``; fails with the command that builds it when missing."""
    path = VENVS / framework / "bin"
    assert (path / "python").exists(), f"{path} missing: run `make frameworks`"
    return path


def exported(lines: list[str], env: dict[str, str]) -> dict[str, str]:
    """The variables the quickstart's ``export`` lines set, run by bash in ``env``."""
    script = "\n".join([*lines, "env -0"])
    out = subprocess.run(
        ["bash", "-euc", script], env=env, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    after = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in after.items() if env.get(k) != v and k not in ("_", "SHLVL", "PWD")}


def app_env(framework: str, base: dict[str, str]) -> dict[str, str]:
    """``base`` with the framework's virtualenv first on PATH (as if activated)."""
    bin_dir = venv_bin(framework)
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{base.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return env


def start(command: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A long-running command (a worker) in its own process group, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            shell=True,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the process group (warm shutdown), SIGKILL it after ``timeout``."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    """Run to completion; the output, or AssertionError with it."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def poll_output(
    args: list[str], cwd: Path, env: dict[str, str], expected: list[str], timeout: float
) -> list[str]:
    """Run ``args`` until its output lines equal ``expected``; the last output either way."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = run(args, cwd, env).strip().splitlines()
        if lines == expected:
            break
        time.sleep(1)
    return lines
