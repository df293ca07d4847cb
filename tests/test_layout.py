"""The shape of the code: the naming rule of experiments, small modules, short signatures."""

import ast
import importlib

from conftest import REPO

MAX_MODULE_LINES = 420  # "about 400"
MAX_POSITIONAL = 8


def test_every_experiment_has_a_library_module_with_run_and_presets():
    """``experiments/X.py`` ↔ ``lth_jax/X.py`` (with ``run(config, workdir)``) ↔ ``experiments/configs/X_*.py``."""
    scripts = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem not in ("__init__", "cli", "checks"))
    assert {"find_ticket", "transfer", "parallel_tasks", "thesis_sweep", "imp_mlp", "report"} <= set(scripts)
    for name in scripts:
        module = importlib.import_module(f"lth_jax.{name}")
        if name == "report":  # a report of workdirs, not an experiment: flags, no config
            continue
        assert callable(getattr(module, "run", None)), f"lth_jax/{name}.py has no run(config, workdir)"
        assert list((REPO / "experiments" / "configs").glob(f"{name}_*.py")), f"no experiments/configs/{name}_*.py"


def test_modules_are_small_and_signatures_short():
    too_long, too_many = [], []
    for path in sorted((REPO / "lth_jax").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > MAX_POSITIONAL:
                    too_many.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({len(positional)})")
    assert not too_long, too_long
    assert not too_many, too_many


def test_temporary_files_stay_inside_the_repository(tmp_path):
    """The suite's temporary files (TFDS's mock makes a directory per use) go to
    .cache/tmp, which the session removes: the system's temporary directory is left alone."""
    import tempfile

    import tensorflow_datasets as tfds
    from conftest import TEMPORARY, script_env

    assert tempfile.gettempdir() == str(TEMPORARY) and tmp_path.is_relative_to(TEMPORARY)
    before = set(TEMPORARY.iterdir())
    with tfds.testing.mock_data(num_examples=4):
        tfds.data_source("mnist", split="train")[0]
    assert [p.name for p in set(TEMPORARY.iterdir()) - before if p.name.endswith("tfds")]  # the mock's directory is here
    assert script_env()["TMPDIR"] == str(TEMPORARY)


def _imports(package_root, name: str, path, modules: set[str]) -> set[str]:
    """The modules of the package that module ``name`` imports anywhere (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, package_root.name):
                found.add(target)
    return found


def import_cycles(package_root) -> list[list[str]]:
    """Every cycle of imports between the modules of a package, as a path ``[a, b, ..., a]``."""
    files = {".".join(p.relative_to(package_root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in sorted(package_root.rglob("*.py"))}
    graph = {name: _imports(package_root, name, path, set(files)) for name, path in files.items()}
    cycles, done = [], set()

    def visit(node, path):
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_no_module_of_the_package_imports_one_above_it():
    """Layers point one way: no import cycle inside lth_jax/, counting imports inside functions."""
    assert import_cycles(REPO / "lth_jax") == []


def test_the_cycle_check_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from pkg import high\n")
    (package / "high.py").write_text("from pkg.low import f\n")
    (package / "side.py").write_text("from . import low\n")
    assert import_cycles(package) == [["pkg.high", "pkg.low", "pkg.high"]]
