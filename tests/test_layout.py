"""The package layout is the architecture: engine, review tools and demo, imported in one direction only."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zbench"
# What each part may import from zbench besides itself: the engine nothing, review the engine,
# the demo and sweeps both. Commands (cli, bench) and the public API (__init__) may import any part.
ALLOWED = {"engine": set(), "review": {"engine"}, "demo": {"engine", "review"}, "sweep": {"engine", "review"}}


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved), lazy ones included."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # "from . import train" imports a module
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_the_parts_below_it(part):
    for path in sorted((PACKAGE / part).rglob("*.py")):
        for name in _imports(path):
            if not name.startswith("zbench."):
                continue
            other = name.split(".")[1]
            if other in ALLOWED and other != part:
                assert other in ALLOWED[part], f"{path.relative_to(ROOT)} imports {name}: {part} must not use {other}"
            elif other not in ALLOWED:
                pytest.fail(
                    f"{path.relative_to(ROOT)} imports {name}: parts use each other, not the package's commands"
                )


def test_the_public_api_never_imports_the_demo():
    """The product must not depend on the demo: importing zbench (what the page and users import) loads no
    module of zbench.demo, and no module outside demo/ names it except the commands that run it."""
    import subprocess
    import sys

    code = "import sys, zbench; print(sorted(m for m in sys.modules if m.startswith('zbench.demo')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    for path in [PACKAGE / "__init__.py", *sorted(PACKAGE.glob("*/__init__.py"))]:
        if path.parent.name != "demo":
            assert not any(n.startswith("zbench.demo") for n in _imports(path)), path.relative_to(ROOT)


def test_the_library_never_imports_streamlit():
    for path in sorted(PACKAGE.rglob("*.py")):
        assert not any(n.split(".")[0] == "streamlit" for n in _imports(path)), path.relative_to(ROOT)


def test_the_page_uses_only_the_public_api():
    for path in [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py"))]:
        names = {n for n in _imports(path) if n.startswith("zbench.")}
        assert not names, f"{path.relative_to(ROOT)} imports {sorted(names)}; import zbench and use its __all__"
