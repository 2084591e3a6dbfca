"""The Lambda zip holds the handler's import closure and nothing else, checked against grimp's
import graph (the one import-linter reads), not against the packager's own reading of imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from scripts.package import (
    HANDLER_MODULE,
    OPERATIONS_PACKAGE,
    ROOT,
    SOURCE_PACKAGES,
    module_file,
    source_files,
)

PROJECT_PACKAGES = (*SOURCE_PACKAGES, OPERATIONS_PACKAGE)
TOOLS_THE_LAMBDA_DOES_NOT_HAVE = frozenset({"typer", "rich", "matplotlib", "moto", "flask"})


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        *PROJECT_PACKAGES,
        include_external_packages=True,
        exclude_type_checking_imports=True,
        cache_dir=None,
    )


@pytest.fixture(scope="module")
def closure(graph: grimp.ImportGraph) -> set[str]:
    """The handler, the project's modules it imports directly or not, and the packages holding
    them (whose __init__ runs first)."""
    imported = {HANDLER_MODULE, *graph.find_upstream_modules(HANDLER_MODULE)}
    project = {name for name in imported if name.split(".")[0] in PROJECT_PACKAGES}
    parents = {
        ".".join(name.split(".")[:end]) for name in project for end in range(1, name.count(".") + 1)
    }
    return project | parents


def test_the_package_holds_exactly_the_source_files_of_the_handlers_import_closure(
    closure: set[str],
) -> None:
    expected = set()
    for module in closure:
        path = module_file(module)
        assert path is not None, module
        expected.add(path.relative_to(ROOT).as_posix())

    packaged = {name.as_posix() for _, name in source_files()}

    assert packaged == expected
    assert "entrypoints/lambda_handler.py" in packaged


def test_no_module_of_the_operators_wing_is_shipped(closure: set[str]) -> None:
    packaged = {name.as_posix() for _, name in source_files()}

    assert not {name for name in closure if name.split(".")[0] == OPERATIONS_PACKAGE}
    assert not {name for name in packaged if Path(name).parts[0] == OPERATIONS_PACKAGE}


def test_no_shipped_module_imports_a_tool_the_lambda_does_not_have(
    graph: grimp.ImportGraph, closure: set[str]
) -> None:
    offending = {
        module: sorted(
            graph.find_modules_directly_imported_by(module) & TOOLS_THE_LAMBDA_DOES_NOT_HAVE
        )
        for module in closure
    }

    assert {module: tools for module, tools in offending.items() if tools} == {}


def test_the_operators_tools_are_left_out_although_they_sit_beside_the_handler(
    closure: set[str],
) -> None:
    """Guards the two tests above against passing on an empty or partial graph."""
    assert {"operations.cli.app", "operations.container", "operations.aws.provisioning"}.isdisjoint(
        closure
    )
    assert {"entrypoints.container", "application.process_batch", "domain.events"} <= closure


def test_a_cold_start_in_exact_mode_does_not_load_the_sketch_library() -> None:
    # datasketches brings numpy: some 0.15 s of import that only sketch mode needs.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, entrypoints.lambda_handler; "
            "print(sorted({'datasketches', 'numpy'} & set(sys.modules)))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]", loaded.stderr
