"""The Kafka broker jars: version, Maven download into a versioned cache, Java lookup.

The jars come from Maven Central (``embedded/kafka/pom.xml``) into
``$TALLY_CACHE_DIR/kafka-<version>/libs``, marked complete by the pom's digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
RESOURCES = Path(__file__).resolve().parent / "kafka"
POM = RESOURCES / "pom.xml"
MARKER = ".tally-complete"
_INSTALL_HINT = "On Debian/Ubuntu: apt-get install maven openjdk-17-jre-headless"


class KafkaBrokerError(RuntimeError):
    """The broker could not be installed, started or reached."""


def default_cache_dir() -> Path:
    """``$TALLY_CACHE_DIR`` or ``~/.cache/tally``."""
    env = os.environ.get("TALLY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tally"


def libs_dir(cache_dir: Path | None = None) -> Path:
    """Where the broker jars live (may not be installed yet)."""
    return (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def is_installed(cache_dir: Path | None = None) -> bool:
    """True when the jar cache is complete and matches the current pom.xml."""
    return _is_complete(libs_dir(cache_dir))


def _is_complete(libs: Path) -> bool:
    marker = libs / MARKER
    try:
        return marker.read_text().strip() == _pom_digest()
    except OSError:
        return False


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaBrokerError(f"`{name}` not found on PATH. {_INSTALL_HINT}")
    return path


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH; must be Java >= 17."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else _require_tool("java")
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=True
        ).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise KafkaBrokerError(f"cannot run {java} -version: {exc}. {_INSTALL_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_x" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise KafkaBrokerError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, {java} is: {out.strip()!r}. "
            f"{_INSTALL_HINT}"
        )
    return java


def install(cache_dir: Path | None = None) -> Path:
    """Download the broker jars once (via Maven) and return the libs directory.

    Idempotent: Maven runs only when the marker file (written last) is missing or
    belongs to a different pom.xml. Downloads go to a temporary sibling directory
    that is renamed into place, so concurrent or interrupted installs are safe.
    """
    libs = libs_dir(cache_dir)
    if is_installed(cache_dir):
        return libs
    mvn = _require_tool("mvn")
    java_executable()
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = libs.parent / f"libs.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _copy_dependencies(mvn, staging)
        (staging / MARKER).write_text(_pom_digest() + "\n")
        _move_into_place(staging, libs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not is_installed(cache_dir):
        raise KafkaBrokerError(f"install finished but {libs} is incomplete")
    return libs


def _copy_dependencies(mvn: str, target: Path) -> None:
    cmd = [
        mvn, "-B", "-q", "-f", str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=target.parent, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise KafkaBrokerError(f"maven failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    if not any(target.glob("kafka_2.13-*.jar")):
        raise KafkaBrokerError(f"maven succeeded but no kafka jar in {target}")


def _move_into_place(staging: Path, libs: Path) -> None:
    """Replace an incomplete or outdated ``libs`` with ``staging``; tolerate a concurrent winner."""
    if libs.exists() and not _is_complete(libs):
        shutil.rmtree(libs, ignore_errors=True)
    with contextlib.suppress(FileExistsError, OSError):
        staging.rename(libs)  # fails if a concurrent install got there first
