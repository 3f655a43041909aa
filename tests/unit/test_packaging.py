"""pyproject.toml declares every folder it ships: setuptools printed ~100 lines of warnings
for each data folder Python could import but ``packages`` did not list (issue #21.17), and
files in an undeclared folder (``web/templates/traces``) were left out of the wheel."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
DECLARED: list[str] = SETUPTOOLS["packages"]
DATA: dict[str, list[str]] = SETUPTOOLS.get("package-data", {})
SKIP = {"__pycache__"}


def folder(package: str) -> Path:
    """``tally.web.static`` -> ``<root>/web/static`` (the root is the ``tally`` package)."""
    assert SETUPTOOLS["package-dir"] == {"tally": "."}
    return ROOT.joinpath(*package.split(".")[1:])


def test_every_importable_folder_inside_a_shipped_package_is_declared():
    missing = []
    for package in DECLARED:
        if package == "tally":
            # The root also holds tests/, docs/, grafana/: its code folders have __init__.py.
            children = [d for d in folder(package).iterdir() if (d / "__init__.py").exists()]
        else:
            children = [d for d in folder(package).iterdir() if d.is_dir()]
        for child in children:
            if child.name.isidentifier() and child.name not in SKIP:
                name = f"{package}.{child.name}"
                if name not in DECLARED:
                    missing.append(name)
    assert not missing, f"add to [tool.setuptools] packages: {missing}"


def test_every_file_of_a_shipped_folder_is_code_or_declared_data():
    undeclared = []
    for package in DECLARED:
        if package == "tally":
            continue  # README, Makefile, Dockerfile: not package data
        patterns = DATA.get(package, [])
        for path in folder(package).iterdir():
            data = path.is_file() and path.suffix not in (".py", ".pyc")
            if data and not any(fnmatch.fnmatch(path.name, p) for p in patterns):
                undeclared.append(str(path.relative_to(ROOT)))
    assert not undeclared, f"add to [tool.setuptools.package-data]: {undeclared}"


def test_package_data_names_only_declared_packages_with_files():
    for package, patterns in DATA.items():
        assert package in DECLARED, package
        for pattern in patterns:
            assert list(folder(package).glob(pattern)), f"{package}: {pattern} matches nothing"
