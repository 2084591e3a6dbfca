"""What goes into the Lambda zip. The real build and its import check: `make package-check`."""

from __future__ import annotations

import importlib.metadata
import re
import zipfile
from pathlib import Path

import pytest

from scripts.package import (
    DEV_LOCK,
    LOCKED_TARGETS,
    SOURCE_PACKAGES,
    TOOLING_LOCK,
    StaleLockError,
    check_locks,
    dev_requirements,
    lock_path,
    lock_text,
    packaged_distributions,
    platform_arguments,
    read_dev_lock,
    read_lock,
    runtime_requirements,
    source_files,
    tooling_lock_text,
    unconditional_pins,
    write_zip,
)


def make_tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")


def test_the_package_holds_the_handlers_modules_but_no_tests_bytecode_or_tools(
    tmp_path: Path,
) -> None:
    make_tree(
        tmp_path,
        [
            "domain/__init__.py",
            "domain/__pycache__/events.cpython-312.pyc",
            "domain/unused.py",
            "infrastructure/__init__.py",
            "infrastructure/aws/__init__.py",
            "infrastructure/aws/py.typed",
            "entrypoints/__init__.py",
            "entrypoints/tests/test_handler.py",
            "entrypoints/stale.pyc",
            "operations/__init__.py",
            "operations/cli.py",
            "tests/unit/test_decoding.py",
            "scripts/package.py",
            "bench/run.py",
        ],
    )
    (tmp_path / "entrypoints" / "lambda_handler.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from domain import events\n"
        "from infrastructure.aws.s3 import archive\n"
        "if TYPE_CHECKING:\n"
        "    from operations import cli\n"
    )
    (tmp_path / "domain" / "events.py").write_text("from . import limits\n")
    (tmp_path / "domain" / "limits.py").write_text("import json\n")
    (tmp_path / "infrastructure" / "aws" / "s3.py").write_text("def archive() -> None:\n    pass\n")

    packaged = {name.as_posix() for _, name in source_files(tmp_path)}

    assert packaged == {
        "domain/__init__.py",
        "domain/events.py",
        "domain/limits.py",
        "infrastructure/__init__.py",
        "infrastructure/aws/__init__.py",
        "infrastructure/aws/s3.py",
        "entrypoints/__init__.py",
        "entrypoints/lambda_handler.py",
    }


def test_a_handler_that_imports_the_operators_tools_is_refused_rather_than_shipped_broken(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path, ["entrypoints/__init__.py", "operations/__init__.py"])
    (tmp_path / "entrypoints" / "lambda_handler.py").write_text(
        "def handler() -> None:\n    from operations import demo\n"
    )
    (tmp_path / "operations" / "demo.py").write_text("")

    with pytest.raises(SystemExit, match=r"operations\.demo"):
        list(source_files(tmp_path))


def test_the_package_ships_the_four_layers() -> None:
    assert SOURCE_PACKAGES == ("domain", "application", "infrastructure", "entrypoints")


def test_distributions_the_runtime_provides_are_left_out_whatever_their_spelling() -> None:
    resolved = {"pydantic": "2.10.0", "botocore": "1.36.0", "python-dateutil": "2.9.0"}

    packaged = packaged_distributions(resolved, ["boto3", "botocore", "Python_Dateutil"])

    assert packaged == {"pydantic": "2.10.0"}


def test_the_zip_is_the_same_bytes_whatever_the_order_or_time_of_the_build(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path / "src", ["b.py", "a/c.py"])
    files = [(tmp_path / "src" / n, Path(n)) for n in ("b.py", "a/c.py")]

    write_zip(files, tmp_path / "one.zip")
    (tmp_path / "src" / "b.py").touch()
    write_zip(list(reversed(files)), tmp_path / "two.zip")

    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    assert zipfile.ZipFile(tmp_path / "one.zip").namelist() == ["a/c.py", "b.py"]


def test_wheels_are_chosen_for_the_lambda_architecture_and_python() -> None:
    arguments = platform_arguments("arm64", "3.12")

    assert "manylinux2014_aarch64" in arguments
    assert "x86_64" not in " ".join(arguments)
    assert arguments[arguments.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in arguments


def test_the_runtime_requirements_are_the_projects_dependencies_without_dev_tools() -> None:
    names = " ".join(runtime_requirements())

    assert "pydantic" in names
    assert "pytest" not in names
    assert "cfn-lint" not in names


def test_each_target_has_a_lock_of_exact_versions_and_hashes_for_todays_dependencies() -> None:
    requirements = runtime_requirements()
    for arch, python_version in LOCKED_TARGETS:
        lines = read_lock(lock_path(arch, python_version), requirements)
        names = {line.split("==", 1)[0] for line in lines}
        assert {"pydantic", "dependency-injector", "aws-lambda-powertools"} <= names
        assert "boto3" not in names  # the runtime ships the SDK
        for line in lines:
            assert re.fullmatch(r"[a-z0-9-]+==[^ ]+ --hash=sha256:[0-9a-f]{64}", line), line


def test_a_lock_written_for_other_dependencies_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lambda-arm64-py3.12.txt"
    path.write_text(lock_text(["pydantic>=2.9,<3"], {"pydantic": ("2.10.0", "0" * 64)}))

    assert read_lock(path, ["pydantic>=2.9,<3"]) == [f"pydantic==2.10.0 --hash=sha256:{'0' * 64}"]
    with pytest.raises(StaleLockError, match="make lock"):
        read_lock(path, ["pydantic>=2.9,<3", "jiter>=0.8"])
    with pytest.raises(StaleLockError, match="no lock file"):
        read_lock(tmp_path / "missing.txt", [])


def test_every_lock_of_requirements_is_written_for_todays_dependencies() -> None:
    check_locks()


def test_the_development_lock_pins_every_distribution_with_hashes() -> None:
    lines = read_dev_lock()
    pins = [line for line in lines if not line[0].isspace()]
    pinned = unconditional_pins(lines)

    assert {"pydantic", "moto", "typer", "pytest", "pip", "uv"} <= set(pinned)
    for pin in pins:
        assert re.match(r"[A-Za-z0-9._-]+==[^ ]+( ; .+)? \\$", pin), pin
    assert sum("--hash=sha256:" in line for line in lines) >= len(pins)


def test_a_development_lock_written_for_other_dependencies_is_refused(tmp_path: Path) -> None:
    stale = tmp_path / "dev.txt"
    stale.write_text(DEV_LOCK.read_text())

    assert read_dev_lock(stale) == read_dev_lock()
    with pytest.raises(StaleLockError, match=r"development dependencies .* run `make lock`"):
        read_dev_lock(stale, [*dev_requirements(), "requests>=2,<3"])


def test_the_lambda_package_ships_the_runtime_versions_the_tests_run_against() -> None:
    tested = unconditional_pins(DEV_LOCK.read_text().splitlines())
    requirements = runtime_requirements()
    for arch, python_version in LOCKED_TARGETS:
        for line in read_lock(lock_path(arch, python_version), requirements):
            name, version = line.split(" ", 1)[0].split("==", 1)
            assert tested.get(name, version) == version, (arch, python_version, name)


def test_the_installers_are_cut_from_the_development_lock_unchanged() -> None:
    dev_lines = DEV_LOCK.read_text().splitlines()
    tooling = TOOLING_LOCK.read_text()

    assert tooling == tooling_lock_text(dev_lines)
    assert set(unconditional_pins(tooling.splitlines())) == {"pip", "uv"}
    assert unconditional_pins(tooling.splitlines()).items() <= unconditional_pins(dev_lines).items()


def test_the_distribution_says_it_is_proprietary_and_never_to_be_uploaded() -> None:
    metadata = importlib.metadata.metadata("experimently-event-processor")

    assert metadata["License-Expression"] == "LicenseRef-Proprietary"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert "Private :: Do Not Upload" in (metadata.get_all("Classifier") or [])
    assert "Experimently platform" in (Path(__file__).parents[2] / "LICENSE").read_text()
