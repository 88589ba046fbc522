"""The build is reproducible and complete: every import is declared, the lock files pin what
pyproject.toml asks for (with hashes), and the wheel holds the code, its Lua scripts, its prompts
and the console scripts."""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
DEV = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
BUILD = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
SHIPPED = ("backend", "workers", "config")  # the packages of the wheel (and the image)
TOOLING = ("tests", "devstack", "bench", "scripts")  # run from a checkout with the dev extra
FIRST_PARTY = {*SHIPPED, *TOOLING}
CONSOLE_SCRIPTS = {
    "ai-backend-api": "backend.__main__:main",
    "ai-backend-worker": "workers.__main__:main",
    "ai-backend-admin": "workers.admin:main",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(roots: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level names of every absolute import under roots -> the files that import them."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.partition(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(roots: tuple[str, ...], declared: list[Requirement]) -> dict[str, str]:
    """Imports under roots whose distribution is not named in declared (a dependency of a
    dependency does not count: it may go away with the next release of the one that pulls it)."""
    names = {canonical(r.name) for r in declared}
    distributions = packages_distributions()
    missing = {}
    for module, files in imported_modules(roots).items():
        if module in sys.stdlib_module_names or module in FIRST_PARTY:
            continue
        providers = {canonical(d) for d in distributions.get(module, [])}
        if not providers & names:
            missing[module] = f"{sorted(providers) or 'not installed'}, imported by {sorted(files)[0]}"
    return missing


def test_every_import_of_the_shipped_code_is_a_declared_dependency() -> None:
    assert undeclared(SHIPPED, RUNTIME) == {}


def test_every_import_of_the_tests_and_tools_is_declared_with_the_dev_extra() -> None:
    assert undeclared(TOOLING, RUNTIME + DEV) == {}


def lock_pins(name: str) -> dict[str, str]:
    """name -> version of a lock file; every pin carries at least one sha256 hash."""
    text = "\n".join(line for line in (ROOT / name).read_text().splitlines() if not line.startswith("#"))
    pins = {}
    for entry in re.split(r"\n(?=\S)", text.strip()):  # a pin, then its indented hashes and comments
        pin = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", entry)
        assert pin, f"{name}: not a pin: {entry[:80]!r}"
        assert "--hash=sha256:" in entry, f"{name}: {pin[1]} has no hash"
        pins[canonical(pin[1])] = pin[2]
    return pins


@pytest.mark.parametrize(
    ("lock", "required"), [("requirements.txt", RUNTIME + BUILD), ("requirements-dev.txt", RUNTIME + DEV + BUILD)]
)
def test_the_lock_pins_every_requirement_within_its_range(lock: str, required: list[Requirement]) -> None:
    pins = lock_pins(lock)
    for requirement in required:
        version = pins.get(canonical(requirement.name))
        assert version, f"{lock} misses {requirement.name}: run `make lock`"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {requirement.name}=={version}, outside {requirement}: run `make lock`"
        )


def test_the_runtime_lock_pins_the_versions_the_tests_run() -> None:
    runtime, dev = lock_pins("requirements.txt"), lock_pins("requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the working tree gets no build/ directory),
    offline, with the setuptools of the lock, as the Dockerfile builds it."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for directory in (*SHIPPED, "lua"):
        shutil.copytree(ROOT / directory, source / directory, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(tmp / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    [built] = (tmp / "dist").glob("ai_interview_backend-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_packages_the_lua_scripts_and_the_prompts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in SHIPPED:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert path.relative_to(ROOT).as_posix() in names, f"{path.relative_to(ROOT)} is not in the wheel"
    assert {"backend/app.py", "workers/admin.py", "config/prompts/chat_system.txt"} <= names
    scripts = sorted(path.name for path in (ROOT / "lua").glob("*.lua"))
    assert scripts and {f"backend/store/lua/{name}" for name in scripts} <= names
    assert not [name for name in names if name.startswith(("tests/", "devstack/", "bench/", "lua/"))]


def test_the_wheel_declares_the_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [entry_points] = [name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    assert dict(parser["console_scripts"]) == CONSOLE_SCRIPTS


def test_the_installed_wheel_finds_its_scripts_and_prompts_and_runs_its_commands(wheel: Path, tmp_path: Path) -> None:
    """Unpacked alone (no checkout beside it, as in the image), the code reads the Lua scripts
    and prompts it ships, and every console script's function imports."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    check = f"""
import importlib, os, sys
from backend.redis.scripts import LUA_DIR
from config.settings import prompt_path
site = {str(site)!r}
assert LUA_DIR.is_relative_to(site), LUA_DIR
assert sorted(p.name for p in LUA_DIR.glob("*.lua")) == {sorted(p.name for p in (ROOT / "lua").glob("*.lua"))!r}
for name in {sorted(p.name for p in (ROOT / "config" / "prompts").glob("*.txt"))!r}:
    assert prompt_path(name).startswith(site) and os.path.isfile(prompt_path(name)), name
for target in {sorted(CONSOLE_SCRIPTS.values())!r}:
    module, _, function = target.partition(":")
    assert importlib.import_module(module).__file__.startswith(site), module
    assert callable(getattr(sys.modules[module], function)), target
"""
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
