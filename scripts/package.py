"""Build the Lambda deployment package, and check that it imports in a clean environment.

    python scripts/package.py build --arch arm64 --python-version 3.12 --output dist/x.zip
    python scripts/package.py build --output-dir DIR     # what `sam build` (makefile) calls
    python scripts/package.py check                      # host-arch zip, clean venv, import
    python scripts/package.py lock                       # re-resolve every lock of requirements/
    python scripts/package.py check-locks                # refuse a lock pyproject.toml outgrew

The package holds the handler's import closure (the modules of the service that
`entrypoints.lambda_handler` imports, directly or not, found by reading their import statements;
never the operators' `operations` wing) and the runtime dependencies of pyproject.toml, as binary
wheels for the target platform. The AWS SDK (boto3 and everything it
pulls in) is left to the Lambda runtime unless `--include-sdk` is given. Nothing else: no tests,
no dev tools, no bytecode caches. The zip is reproducible (sorted entries, fixed timestamps), and so is what it holds: the
dependencies are installed from a lock file per architecture and Python version
(`requirements/lambda-<arch>-py<version>.txt`, exact versions and the wheel's sha256, installed
with `--require-hashes`), which `lock` writes and which a build refuses when pyproject.toml's
runtime dependencies changed since (`make lock`).

The same `lock` writes the development environment's lock, `requirements/dev.txt` (runtime
dependencies, the extras `make run` and `make test` install and the installers pip and uv, for
any platform and Python 3.11+, with every file's sha256; resolved by uv), and the Lambda locks take
their runtime versions from it, so the zip ships what the tests ran against where the target
platform has a wheel of it; `requirements/tooling.txt` is cut from it (pip and uv, which the
Makefile installs first) and `requirements/checkov.txt` locks checkov's venv of its own. The
Makefile's set-up runs `check-locks`, which refuses any lock written for other dependencies than
pyproject.toml's.
Uses only the standard library and pip (uv for `lock`), so it runs without the project's virtual
environment.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("domain", "application", "infrastructure", "entrypoints")
"""The layers the function's modules come from; of them, only what the handler imports ships."""
OPERATIONS_PACKAGE = "operations"
"""The operators' and developers' tools: never imported by the handler, never shipped."""
HANDLER_MODULE = "entrypoints.lambda_handler"
IMPORT_CHECK_MODULE = HANDLER_MODULE
"""The module `check` imports from the unpacked zip: the handler of template.yaml."""

SDK_ROOT = "boto3"
"""The Lambda Python runtime ships boto3 and its dependencies; the package leans on them."""

ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
# Lambda's Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34): any of these wheels loads.
MANYLINUX_TAGS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
EXCLUDED_DIRECTORIES = frozenset({"__pycache__", "tests", "test"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


LOCK_DIRECTORY = ROOT / "requirements"
LOCKED_TARGETS = tuple(
    (arch, python_version) for arch in ("arm64", "x86_64") for python_version in ("3.11", "3.12")
)
"""The template's target (arm64, 3.12), x86 (`ARCH=x86_64`), and Python 3.11, which
`package-check` builds for when it runs on a 3.11 host."""
RUNTIME = "runtime"
"""The kind of requirements a Lambda lock is written for; see `digest_line`."""

DEV_LOCK = LOCK_DIRECTORY / "dev.txt"
DEV_EXTRAS = ("cli", "demo", "dev")
"""What `make run` (the demo: cli and its embedded emulator) and `make test` install."""
TOOLING_GROUP = "tooling"
DEV_GROUPS = (TOOLING_GROUP,)
TOOLING_LOCK = LOCK_DIRECTORY / "tooling.txt"
"""The installers (pip, uv) cut from the development lock, which pip installs before uv installs
the rest: the same versions and hashes, so nothing in .venv is fetched without a lock."""
DEV_PYTHON = "3.11"
"""The oldest Python of requires-python: the universal resolution holds from it upwards."""
DEVELOPMENT = "development"
CHECKOV_GROUP = "checkov"
CHECKOV_LOCK = LOCK_DIRECTORY / "checkov.txt"
"""checkov's venv of its own (`make lint`): it pins below the versions the project runs with."""
_PINNED_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^ ;\\]+)(?P<marker> ;)?"
)


class StaleLockError(SystemExit):
    """The lock no longer matches pyproject.toml's dependencies."""


def lock_path(arch: str, python_version: str, directory: Path = LOCK_DIRECTORY) -> Path:
    return directory / f"lambda-{arch}-py{python_version}.txt"


def digest_line(kind: str) -> str:
    """The comment by which a lock names the requirements it was written for."""
    return f"# {kind} requirements sha256: "


def requirements_digest(requirements: Sequence[str]) -> str:
    """Of the requirement strings as declared (their order does not matter)."""
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()


def lock_text(requirements: Sequence[str], pinned: dict[str, tuple[str, str]]) -> str:
    """A pip requirements file: `name==version --hash=sha256:…` per packaged distribution."""
    lines = [
        "# The Lambda package's dependencies, installed with --require-hashes --no-deps.",
        "# Written by `make lock` (scripts/package.py lock); do not edit.",
        f"{digest_line(RUNTIME)}{requirements_digest(requirements)}",
    ]
    lines += [
        f"{name}=={version} --hash=sha256:{digest}"
        for name, (version, digest) in sorted(pinned.items())
    ]
    return "\n".join(lines) + "\n"


def read_lock(path: Path, requirements: Sequence[str], kind: str = RUNTIME) -> list[str]:
    """The lock's requirement lines, once it is known to match `requirements` of `kind`."""
    if not path.exists():
        raise StaleLockError(f"no lock file {_shown(path)}: run `make lock`")
    lines = path.read_text().splitlines()
    prefix = digest_line(kind)
    digests = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    if digests != [requirements_digest(requirements)]:
        raise StaleLockError(
            f"{_shown(path)} was written for other {kind} dependencies than "
            "pyproject.toml's: run `make lock`"
        )
    return [line for line in lines if line and not line.startswith("#")]


def read_dev_lock(path: Path = DEV_LOCK, requirements: Sequence[str] | None = None) -> list[str]:
    """The development lock's lines, once it is known to match pyproject.toml."""
    if requirements is None:
        requirements = dev_requirements()
    return read_lock(path, requirements, DEVELOPMENT)


def check_locks() -> None:
    """Refuse any lock of requirements/ that pyproject.toml's dependencies have outgrown."""
    read_dev_lock()
    read_dev_lock(TOOLING_LOCK)
    if TOOLING_LOCK.read_text() != tooling_lock_text(DEV_LOCK.read_text().splitlines()):
        raise StaleLockError(
            f"{_shown(TOOLING_LOCK)} is not cut from {_shown(DEV_LOCK)}: run `make lock`"
        )
    read_lock(CHECKOV_LOCK, group_requirements(CHECKOV_GROUP), CHECKOV_GROUP)
    requirements = runtime_requirements()
    for arch, python_version in LOCKED_TARGETS:
        read_lock(lock_path(arch, python_version), requirements)


def unconditional_pins(lock_lines: Iterable[str]) -> dict[str, str]:
    """Name -> version of a uv lock's pins that hold on every platform and Python (no marker)."""
    pins = {}
    for line in lock_lines:
        match = _PINNED_LINE.match(line)
        if match and not match["marker"]:
            pins[normalise(match["name"])] = match["version"]
    return pins


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _pin(line: str) -> tuple[str, str]:
    name, version = line.split(" ", 1)[0].split("==", 1)
    return name, version


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    with pyproject.open("rb") as handle:
        requirements = tomllib.load(handle)["project"]["dependencies"]
    return [str(requirement) for requirement in requirements]


def dev_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Everything the development lock is resolved from: runtime, DEV_EXTRAS, DEV_GROUPS."""
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle)
    extras = project["project"]["optional-dependencies"]
    requirements = [str(requirement) for requirement in project["project"]["dependencies"]]
    requirements += [str(requirement) for extra in DEV_EXTRAS for requirement in extras[extra]]
    requirements += [
        requirement for group in DEV_GROUPS for requirement in group_requirements(group, pyproject)
    ]
    return requirements


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_arguments(arch: str, python_version: str) -> list[str]:
    machine = ARCHITECTURES[arch]
    arguments = ["--only-binary=:all:", "--implementation", "cp"]
    arguments += ["--python-version", python_version]
    for tag in MANYLINUX_TAGS:
        arguments += ["--platform", f"{tag}_{machine}"]
    return arguments


def resolve(requirements: Sequence[str], arch: str, python_version: str) -> dict[str, str]:
    """Name -> version of everything pip would install for the target platform."""
    return {
        name: version
        for name, (version, _) in resolve_pinned(requirements, arch, python_version).items()
    }


def resolve_pinned(
    requirements: Sequence[str],
    arch: str,
    python_version: str,
    constraints: dict[str, str] | None = None,
) -> dict[str, tuple[str, str]]:
    """Name -> (version, sha256 of the wheel) of everything pip would install for the target,
    held to the versions of `constraints` (name -> version) where it names a distribution."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        constraint_arguments = []
        if constraints:
            constraint_file = Path(scratch) / "constraints.txt"
            constraint_file.write_text(
                "".join(f"{name}=={version}\n" for name, version in sorted(constraints.items()))
            )
            constraint_arguments = ["--constraint", str(constraint_file)]
        _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--target",
            str(Path(scratch) / "unused"),
            "--report",
            str(report),
            *platform_arguments(arch, python_version),
            *constraint_arguments,
            *requirements,
        )
        installs = json.loads(report.read_text())["install"]
    return {
        normalise(item["metadata"]["name"]): (
            item["metadata"]["version"],
            item["download_info"]["archive_info"]["hashes"]["sha256"],
        )
        for item in installs
    }


def lock(targets: Sequence[tuple[str, str]] = LOCKED_TARGETS) -> None:
    """Resolve the development lock afresh, then each target's runtime dependencies at its
    versions (afresh where the target has no wheel of one of them), and write the lock files."""
    lock_dev()
    tested = unconditional_pins(DEV_LOCK.read_text().splitlines())
    requirements = runtime_requirements()
    for arch, python_version in targets:
        try:
            pinned = resolve_pinned(requirements, arch, python_version, tested)
        except subprocess.CalledProcessError:
            print(
                f"{arch}, Python {python_version}: not resolvable at the versions of "
                f"{_shown(DEV_LOCK)}; resolved afresh",
                file=sys.stderr,
            )
            pinned = resolve_pinned(requirements, arch, python_version)
        provided = set(resolve([SDK_ROOT], arch, python_version))
        packaged = {
            name: pinned[name]
            for name in packaged_distributions(resolve_versions(pinned), provided)
        }
        path = lock_path(arch, python_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lock_text(requirements, packaged))
        print(f"{path.relative_to(ROOT)}: {len(packaged)} distributions", file=sys.stderr)


def lock_dev() -> None:
    """The development lock, the tooling lock cut from it, and checkov's lock."""
    lines = compile_with_uv(DEV_LOCK, DEVELOPMENT, dev_requirements(), DEV_EXTRAS, DEV_GROUPS)
    TOOLING_LOCK.write_text(tooling_lock_text(lines))
    compile_with_uv(
        CHECKOV_LOCK, CHECKOV_GROUP, group_requirements(CHECKOV_GROUP), (), (CHECKOV_GROUP,)
    )


def compile_with_uv(
    path: Path,
    kind: str,
    requirements: Sequence[str],
    extras: Sequence[str],
    groups: Sequence[str],
) -> list[str]:
    """Resolve pyproject.toml's `extras` (with the runtime dependencies; none without extras)
    and `groups` with uv, for every platform and Python from DEV_PYTHON up, with the sha256 of
    every file, into `path` with the digest of `requirements`; return its lines."""
    arguments = ["pip", "compile", "--universal", "--generate-hashes", "--quiet"]
    arguments += ["--python-version", DEV_PYTHON, "--custom-compile-command", "make lock"]
    if extras:
        arguments += ["pyproject.toml"]
    arguments += [argument for extra in extras for argument in ("--extra", extra)]
    arguments += [
        argument for group in groups for argument in ("--group", f"pyproject.toml:{group}")
    ]
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / path.name
        subprocess.run([_uv(), *arguments, "-o", str(output)], check=True, cwd=ROOT)
        lines = output.read_text().splitlines()
    # The digest goes at the end of uv's header (its leading comment lines).
    header_end = next(index for index, line in enumerate(lines) if not line.startswith("#"))
    lines[header_end:header_end] = [f"{digest_line(kind)}{requirements_digest(requirements)}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(
        f"{_shown(path)}: {len(unconditional_pins(lines))} distributions on every platform",
        file=sys.stderr,
    )
    return lines


def tooling_lock_text(dev_lock_lines: Sequence[str]) -> str:
    """TOOLING_LOCK: the development lock's digest and its stanzas (pin, hashes, annotations)
    of the tooling group's distributions."""
    names = {
        normalise(_requirement_name(requirement))
        for requirement in group_requirements(TOOLING_GROUP)
    }
    lines = [
        "# The installers of .venv, cut from requirements/dev.txt by `make lock`: pip installs",
        "# these, then uv installs requirements/dev.txt. Do not edit.",
    ]
    lines += [line for line in dev_lock_lines if line.startswith(digest_line(DEVELOPMENT))]
    taking = False
    for line in dev_lock_lines:
        if line and not line[0].isspace():
            match = _PINNED_LINE.match(line)
            taking = match is not None and normalise(match["name"]) in names
        if taking:
            lines.append(line)
    return "\n".join(lines) + "\n"


def group_requirements(group: str, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    with pyproject.open("rb") as handle:
        groups = tomllib.load(handle)["dependency-groups"]
    return [str(requirement) for requirement in groups[group]]


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match[0]


def _uv() -> str:
    """uv of this interpreter's environment (`make lock` installs it there), else of PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("`lock` needs uv: run `make lock`, which installs it into .venv")
    return found


def resolve_versions(pinned: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: version for name, (version, _) in pinned.items()}


def packaged_distributions(
    resolved: dict[str, str], runtime_provided: Iterable[str]
) -> dict[str, str]:
    provided = {normalise(name) for name in runtime_provided}
    return {name: version for name, version in sorted(resolved.items()) if name not in provided}


def is_packaged(relative: Path) -> bool:
    """Whether a file under a package directory belongs in the zip."""
    if any(part in EXCLUDED_DIRECTORIES for part in relative.parts[:-1]):
        return False
    return not relative.name.endswith(EXCLUDED_SUFFIXES)


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The source file of one of the project's modules (a package's is its __init__.py)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`: imports only the type checker runs."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _run_time_imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at module level or in a function (a lazy import is
    still an import of the package), leaving out the bodies of `if TYPE_CHECKING:`."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _run_time_imports(node.orelse)
        else:
            yield from _run_time_imports(ast.iter_child_nodes(node))


def imported_modules(module: str, source: str, is_package: bool = False) -> set[str]:
    """The absolute names `module` (whose text is `source`; `is_package` when it is a package's
    __init__) imports: for `from a import b`, both `a` and `a.b` (which of them is a module is
    for the caller to tell)."""
    names: set[str] = set()
    for node in _run_time_imports(ast.parse(source).body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_closure(
    root: Path = ROOT,
    module: str = HANDLER_MODULE,
    packages: Sequence[str] = (*SOURCE_PACKAGES, OPERATIONS_PACKAGE),
) -> set[str]:
    """`module` and every module of `packages` it imports at run time, directly or not, with the
    packages that hold them (Python runs a package's __init__ before any module in it)."""
    found: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found or name.split(".")[0] not in packages:
            continue
        path = module_file(name, root)
        if path is None:
            continue  # `from a import b` where b is not a module
        found.add(name)
        parts = name.split(".")
        pending.extend(".".join(parts[:end]) for end in range(1, len(parts)))
        source = path.read_text(encoding="utf-8")
        pending.extend(imported_modules(name, source, path.name == "__init__.py") - found)
    return found


def source_files(root: Path = ROOT) -> Iterator[tuple[Path, Path]]:
    """(file, path in the zip) for the handler's import closure: what the function runs."""
    closure = import_closure(root)
    outside = sorted(name for name in closure if name.split(".")[0] not in SOURCE_PACKAGES)
    if outside:
        raise SystemExit(f"the handler imports modules that are never shipped: {outside}")
    for module in sorted(closure):
        path = module_file(module, root)
        assert path is not None  # import_closure keeps only modules it found a file for
        relative = path.relative_to(root)
        if is_packaged(relative):
            yield path, relative


def dependency_files(site: Path) -> Iterator[tuple[Path, Path]]:
    for path in sorted(site.rglob("*")):
        relative = path.relative_to(site)
        if path.is_file() and is_packaged(relative) and relative.parts[0] != "bin":
            yield path, relative


def write_zip(files: Iterable[tuple[Path, Path]], output: Path) -> None:
    """A reproducible zip: entries sorted by name, fixed timestamps and permissions."""
    output.parent.mkdir(parents=True, exist_ok=True)
    entries = sorted(files, key=lambda entry: entry[1].as_posix())
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for source, name in entries:
            info = zipfile.ZipInfo(name.as_posix(), date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes(), compresslevel=9)


def stage(arch: str, python_version: str, include_sdk: bool, site: Path) -> dict[str, str]:
    """Install the runtime dependencies for the target into `site`; return what was installed.

    From the target's lock file; `--include-sdk` (boto3 bundled, which no lock covers)
    resolves afresh and says so."""
    requirements = runtime_requirements()
    if not include_sdk:
        locked = read_lock(lock_path(arch, python_version), requirements)
        if locked:
            with tempfile.TemporaryDirectory() as scratch:
                lock_file = Path(scratch) / "lock.txt"
                lock_file.write_text("\n".join(locked) + "\n")
                _pip(
                    "install",
                    "--no-deps",
                    "--require-hashes",
                    "--quiet",
                    "--target",
                    str(site),
                    *platform_arguments(arch, python_version),
                    "-r",
                    str(lock_file),
                )
        return dict(_pin(line) for line in locked)
    print("--include-sdk: dependencies resolved afresh, not from a lock file", file=sys.stderr)
    packaged = packaged_distributions(resolve(requirements, arch, python_version), ())
    if packaged:
        _pip(
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            *platform_arguments(arch, python_version),
            *(f"{name}=={version}" for name, version in packaged.items()),
        )
    return packaged


def build(
    arch: str,
    python_version: str,
    include_sdk: bool,
    output: Path | None,
    output_dir: Path | None,
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        packaged = stage(arch, python_version, include_sdk, site)
        files = [*source_files(), *dependency_files(site)]
        print(f"dependencies ({arch}, Python {python_version}):", file=sys.stderr)
        for name, version in packaged.items():
            print(f"  {name}=={version}", file=sys.stderr)
        if output_dir is not None:
            for source, relative in files:
                target = output_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            print(f"{output_dir}: {len(files)} files")
        if output is not None:
            write_zip(files, output)
            size = output.stat().st_size
            print(f"{output}: {size / 1024 / 1024:.1f} MiB ({size} bytes, {len(files)} files)")


def check(module: str = IMPORT_CHECK_MODULE) -> None:
    """Build for this machine, unpack into a clean venv that has only boto3, import `module`.

    The target architecture's zip cannot be imported here (its compiled extensions are for
    another CPU); this one is built by the same code for the host, which is what it proves.
    """
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        package = scratch_path / "package.zip"
        build(arch, python_version, include_sdk=False, output=package, output_dir=None)
        task_root = scratch_path / "task"
        with zipfile.ZipFile(package) as archive:
            archive.extractall(task_root)
        venv = scratch_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        # What the runtime ships besides the standard library: the AWS SDK.
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", SDK_ROOT], check=True, env=_pip_env()
        )
        probe = (
            "import importlib, sys; sys.path.insert(0, sys.argv[1]); "
            "module = importlib.import_module(sys.argv[2]); print(module.__file__)"
        )
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        imported = subprocess.run(
            [str(python), "-c", probe, str(task_root), module],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
            cwd=scratch_path,
            env=environment,
        ).stdout.strip()
        if not Path(imported).resolve().is_relative_to(task_root.resolve()):
            raise SystemExit(f"{module} was imported from {imported}, not from the package")
        print(f"{module} imports from the package in a clean venv with only {SDK_ROOT}: OK")


def _pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _pip(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *arguments], check=True, env=_pip_env())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="build the package")
    build_command.add_argument("--arch", choices=sorted(ARCHITECTURES), default="arm64")
    build_command.add_argument("--python-version", default="3.12")
    build_command.add_argument("--include-sdk", action="store_true", help="bundle boto3 too")
    build_command.add_argument("--output", type=Path, help="zip file to write")
    build_command.add_argument("--output-dir", type=Path, help="directory to fill (sam build)")
    check_command = commands.add_parser("check", help="build for this host and import it")
    check_command.add_argument("--module", default=IMPORT_CHECK_MODULE)
    commands.add_parser("lock", help="re-resolve the lock files of requirements/")
    commands.add_parser("check-locks", help="refuse a lock written for other dependencies")
    arguments = parser.parse_args(argv)
    if arguments.command == "build":
        if arguments.output is None and arguments.output_dir is None:
            parser.error("build needs --output and/or --output-dir")
        build(
            arguments.arch,
            arguments.python_version,
            arguments.include_sdk,
            arguments.output,
            arguments.output_dir,
        )
    elif arguments.command == "lock":
        lock()
    elif arguments.command == "check-locks":
        check_locks()
    else:
        check(arguments.module)


if __name__ == "__main__":
    main()
