"""Architecture rules from STYLE.md, enforced: dependency direction, no global RNG, lint."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIM_PACKAGES = ["sim", "workload", "hardware", "interconnect", "cluster", "metrics"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0] if node.level == 0 else "")
    return out


# ---------------------------------------------------------------------------- layers (issue #20)
PACKAGES = ("disagg_gym", "disagg_gym_agents")
SIMULATOR, ENV, AGENTS, CLI = range(4)
LAYER_NAMES = ("simulator", "env", "agents", "CLI entry points")
# The simulator's shared helpers (no Gymnasium): configs, errors, registries, RNG streams, I/O.
SIM_MODULES = {"errors", "registry", "types", "rng", "config", "io", "paths", "scenario", "bounds", "generator",
               "simulation", "testing", "argtypes", "extras", "plots", "configs"}
ENV_MODULES = {"env", "wrappers", "integrations"}
CLI_MODULES = {"disagg_gym.cli", "disagg_gym.commands", "disagg_gym.bench", "disagg_gym.__main__",
               "disagg_gym_agents.commands"}
HEAVY = {"torch", "stable_baselines3", "sb3_contrib", "ray", "matplotlib", "tensorboard", "tqdm", "rich"}
"""Optional heavy dependencies: the only reason a function-local import is allowed in the agents."""


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def layer(module: str) -> int:
    """The layer of one of our modules: simulator <- env <- agents <- CLI entry points."""
    if module in CLI_MODULES:
        return CLI
    top, _, rest = module.partition(".")
    if top == "disagg_gym_agents":
        return AGENTS
    if module == "disagg_gym":  # the package init registers the env ids
        return ENV
    sub = rest.split(".")[0]
    if sub in SIM_PACKAGES or sub in SIM_MODULES:
        return SIMULATOR
    if sub in ENV_MODULES:
        return ENV
    raise AssertionError(f"{module}: no layer assigned (add it to tests/test_architecture.py)")


SIM_LAYER = sorted(m for m in MODULES if layer(m) == SIMULATOR)


def test_the_simulator_layer_is_the_sub_packages_and_the_shared_modules() -> None:
    # the parametrisation below covers the top-level modules too (simulation, scenario, bounds...)
    assert {"disagg_gym.simulation", "disagg_gym.scenario", "disagg_gym.bounds", "disagg_gym.sim.engine",
            "disagg_gym.cluster.cluster"} <= set(SIM_LAYER)


@pytest.mark.parametrize("module", SIM_LAYER)
def test_simulator_never_imports_gymnasium_torch_or_sb3(module: str) -> None:
    bad = _imports(MODULES[module]) & {"gymnasium", "torch", "stable_baselines3", "sb3_contrib", "disagg_gym_agents"}
    assert not bad, f"{MODULES[module].relative_to(ROOT)} imports {sorted(bad)}"


def _target(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str:
    """The module an import binds: ``from pkg import sub`` is ``pkg.sub`` when that is a module."""
    if isinstance(node, ast.Import):
        return alias.name
    base = node.module or ""
    if node.level:
        pkg = module.split(".")
        is_pkg = MODULES[module].name == "__init__.py"
        base = ".".join(pkg[: len(pkg) - node.level + (1 if is_pkg else 0)] + ([base] if base else []))
    full = f"{base}.{alias.name}"
    return full if full in MODULES else base


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _edges(module: str) -> list[tuple[str, bool, int]]:
    """``(imported module, inside a function, line)`` for each runtime import of ``module``
    (imports under ``if TYPE_CHECKING:`` are annotations only, not dependencies at run time)."""
    tree = ast.parse(MODULES[module].read_text())
    out = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for alias in child.names:
                    out.append((_target(module, child, alias), in_func, child.lineno))
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return out


def _ours(name: str) -> str | None:
    """The longest of our module names that ``name`` is or lies in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_has_a_layer() -> None:
    for m in MODULES:
        layer(m)


def test_dependencies_point_one_way() -> None:
    """simulator <- env <- agents <- CLI entry points, with no exception: a module imports only
    modules of its own layer or below, and the simulator and env never import the agents."""
    bad = []
    for m in MODULES:
        for target, _, line in _edges(m):
            t = _ours(target)
            if t is None:
                continue
            if layer(t) > layer(m) or (m.startswith("disagg_gym.") or m == "disagg_gym") and t.startswith("disagg_gym_agents"):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line}: {m} ({LAYER_NAMES[layer(m)]}) "
                           f"imports {t} ({LAYER_NAMES[layer(t)]})")
    assert not bad, "\n".join(bad)


def _heavy(module: str, seen: set[str] | None = None) -> bool:
    """Whether importing ``module`` imports a HEAVY package (at module level, transitively)."""
    if module.split(".")[0] in HEAVY:
        return True
    m = _ours(module)
    if m is None:
        return False
    seen = seen if seen is not None else set()
    if m in seen:
        return False
    seen.add(m)
    return any(_heavy(t, seen) for t, in_func, _ in _edges(m) if not in_func)


def test_agents_import_lazily_only_heavy_optional_dependencies() -> None:
    """A function-local import in the agents is for torch/SB3/Ray/matplotlib, never to dodge a cycle."""
    bad = []
    for m in MODULES:
        if not m.startswith("disagg_gym_agents"):
            continue
        for target, in_func, line in _edges(m):
            if in_func and not _heavy(target):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line}: function-local import of {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    """Our modules' imports (module-level and function-local) form no cycle (Tarjan's SCCs)."""
    graph = {m: sorted({t for x, _, _ in _edges(m) if (t := _ours(x)) and t != m}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_no_global_random_state() -> None:
    pattern = re.compile(r"\bnp\.random\.(?!Generator|SeedSequence|PCG64|default_rng)[a-z_]+\(|\brandom\.(random|randint|choice|shuffle|seed|uniform)\(")
    offenders = []
    for folder in ("disagg_gym", "disagg_gym_agents", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for no, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_ruff_clean() -> None:
    ruff = str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        ruff = shutil.which("ruff") or ""
    if not ruff:
        pytest.skip("ruff is not installed (pip install '.[test]')")
    res = subprocess.run([ruff, "check", "disagg_gym", "disagg_gym_agents", "scripts", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_simulator_packages_type_check_strictly() -> None:
    """mypy --strict on sim, cluster, interconnect, workload, hardware ([tool.mypy] in pyproject)."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[test]')")
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
