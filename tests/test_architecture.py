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


@pytest.mark.parametrize("pkg", SIM_PACKAGES)
def test_simulator_never_imports_gymnasium_torch_or_sb3(pkg: str) -> None:
    for path in sorted((ROOT / "disagg_gym" / pkg).rglob("*.py")):
        bad = _imports(path) & {"gymnasium", "torch", "stable_baselines3", "sb3_contrib", "disagg_gym_agents"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_env_never_imports_agents() -> None:
    for path in sorted((ROOT / "disagg_gym").rglob("*.py")):
        assert "disagg_gym_agents" not in _imports(path) or path.name in ("commands.py", "cli.py"), path


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
