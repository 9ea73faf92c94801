"""What a user installs: the distribution's name, version, license and type marker."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from importlib.metadata import version
from pathlib import Path

import pytest

import messagebus
from messagebus._version import DISTRIBUTION

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


class TestVersion:
    """messagebus.__version__ is the installed distribution's."""

    def test_version_is_the_metadata(self) -> None:
        """One source: pyproject.toml, through the installed metadata."""
        assert messagebus.__version__ == version(DISTRIBUTION) == PROJECT["version"]

    def test_the_distribution_name(self) -> None:
        """anyio-messagebus: the PyPI name messagebus belongs to another project."""
        assert PROJECT["name"] == DISTRIBUTION == "anyio-messagebus"

    def test_not_installed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A source tree imported without installing it says so rather than failing."""
        from messagebus import _version

        monkeypatch.setattr(_version, "DISTRIBUTION", "anyio-messagebus-not-installed")
        assert _version.installed_version() == "0+unknown"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from this tree (hatchling, no build isolation: no network)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("anyio_messagebus-*.whl")
    return zipfile.ZipFile(built)


class TestWheel:
    """The wheel carries the license, the type marker and the metadata PyPI shows."""

    def test_license_and_py_typed(self, wheel: zipfile.ZipFile) -> None:
        """LICENSE (PEP 639's licenses/ folder) and messagebus/py.typed are inside."""
        names = wheel.namelist()
        assert "messagebus/py.typed" in names
        (license_file,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(license_file) == (ROOT / "LICENSE").read_bytes()
        assert b"MIT License" in wheel.read(license_file)

    def test_metadata(self, wheel: zipfile.ZipFile) -> None:
        """Name, version, license expression and classifiers, as pyproject says."""
        (metadata_file,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = HeaderParser().parsestr(wheel.read(metadata_file).decode())
        assert metadata["Name"] == "anyio-messagebus"
        assert metadata["Version"] == messagebus.__version__
        assert metadata["License-Expression"] == "MIT"
        classifiers = set(metadata.get_all("Classifier") or [])
        assert {
            "Typing :: Typed",
            "Framework :: AnyIO",
            "Framework :: AsyncIO",
            "Framework :: Trio",
            "Programming Language :: Python :: 3.11",
        } <= classifiers

    def test_the_command_is_installed(self, wheel: zipfile.ZipFile) -> None:
        """The messagebus console script points at the CLI."""
        (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        assert "messagebus = messagebus.cli:main" in wheel.read(entry_points).decode()
