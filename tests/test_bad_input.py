"""Malformed input to every command ends in exactly one line on stderr that names it, a non-zero exit,
no traceback, and nothing written: no workdir created, nothing new in the directory the command ran
from, a workdir that exists left as it was (no file changed, no temporary file left).

The cases run through ``tests/fuzz_runner.py``: one process imports the packages, and every case is a
forked child that runs ``python -m experiments.<script> ...`` (about a second each instead of five),
each from an empty directory of its own, with a workdir of its own that must not appear.
"""

import json
import subprocess
import sys

import pytest
from conftest import REPO, script_env

# (script, arguments, environment, what the one line must contain). {new}: a directory that does not
# exist; {file}: a regular file; {run}: a finished parallel-task run; {bad_py}/{no_get}/...: config files
# (broken, without get_config(), raising, returning a dict or None, with a negative seed).
CASES = [
    ("parallel_tasks", ["--config.seeds=-1"], {}, "--config.seeds=-1"),
    ("parallel_tasks", ["--config.shape=4,-3,2", "--config.levels=2", "--config.target=5"], {}, "--config.shape=4,-3,2"),
    ("parallel_tasks", ["--config=nonexistent_preset"], {}, "--config=nonexistent_preset is neither a config file nor a preset"),
    ("parallel_tasks", ["--workdir={file}"], {}, "--workdir={file}: is a file"),
    ("parallel_tasks", ["--config.extension_level=100"], {}, "--config.extension_level=100 makes a model of"),
    ("parallel_tasks", ["--config.extension_level=5000"], {}, "--config.extension_level=5000"),
    ("parallel_tasks", ["--config.extension_level=-1"], {}, "level=-1"),
    ("parallel_tasks", ["--config.rate=1.5"], {}, "--config.rate=1.5"),
    ("parallel_tasks", ["--config.rate=0"], {}, "rate=0"),
    ("parallel_tasks", ["--config.seeds=0,x"], {}, "seeds"),
    ("parallel_tasks", ["--config.epochs=0"], {}, "epochs=0"),
    ("parallel_tasks", ["--config.batch_size=0"], {}, "batch_size=0"),
    ("parallel_tasks", ["--config.coverage=all"], {}, "--config.coverage='all'"),
    ("parallel_tasks", ["--config.dataset=cifar"], {}, "'cifar'"),
    ("parallel_tasks", ["--config.shape=4,8,3", "--config.levels=2", "--config.target=10"], {}, "--config.shape="),
    ("parallel_tasks", ["--config.shape=4,0,2", "--config.levels=1", "--config.target=2"], {}, "--config.shape=4,0,2"),
    ("parallel_tasks", ["--config.shape=4,8,2", "--config.levels=2", "--config.target=500"], {}, "target=500"),
    ("parallel_tasks", ["--config.seed=3"], {}, "'seed'"),
    ("parallel_tasks", ["--config.shape=4,8,2", "--config.levels=40", "--config.target=40"], {}, "--config.levels=40 is too many"),
    ("parallel_tasks", ["--config.learning_rate=fast"], {}, "--config.learning_rate=fast"),
    ("parallel_tasks", ["--config.validation_split=1.5"], {}, "--config.validation_split=1.5"),
    ("parallel_tasks", ["--config.dataset=mnist", "--config.shape=784,30,10", "--config.levels=1", "--config.target=100",
                        "--data_dir=/nonexistent"], {}, "'mnist'"),
    ("parallel_tasks", [], {"LTH_JAX_CPU_DEVICES": "many"}, "LTH_JAX_CPU_DEVICES"),
    ("parallel_tasks", ["--workdir={run}", "--config.epochs=1", "--config.extension_level=1", "--config.seeds=0", "--config.rate=0.5"],
     {}, "this run asks experiment.rate=0.5"),
    ("parallel_tasks", ["--config={bad_py}"], {}, "bad_config.py"),
    ("parallel_tasks", ["--config={no_get}"], {}, "defines no get_config()"),
    ("parallel_tasks", ["--config={raising_py}"], {}, "ZeroDivisionError: division by zero (raising_config.py, line 2)"),
    ("find_ticket", ["--config={raising_py}"], {}, "ZeroDivisionError: division by zero (raising_config.py, line 2)"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--workdir={run}"], {}, "holds a parallel_tasks run"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--config.training.epochs=0"], {}, "epochs=0"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--config.dataset=digitz"], {}, "'digitz'"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--config.rewind=1epoch"], {}, "'1epoch'"),
    ("find_ticket", ["--config=lenet_on_digits"], {}, "--config=lenet_on_digits is neither a config file nor a preset"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--workdir={file}"], {}, "is a file"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--config.training.batch_size=100000000"], {},
     "--config.training.batch_size=100000000 with model=lenet_300_100 makes a model of 266,610 parameters"),
    ("imp_mlp", ["--workdir={run}"], {}, "holds a parallel_tasks run"),
    ("imp_mlp", ["--config.levels=-1"], {}, "error: --config.levels=-1 is negative"),
    ("imp_mlp", ["--config.optimizer=rmsprop"], {}, "error: optimizer name='rmsprop' is not one of sgd, adam, adamw"),
    ("imp_mlp", ["--config.shape=4,8,3"], {}, "error: --config.shape=(4, 8, 3) must start with 4 inputs and end with 2 outputs"),
    ("imp_mlp", ["--config.rate=1.5"], {}, "error: --config.rate=1.5 is outside the open interval (0, 1)"),
    ("imp_mlp", ["--config.levels=x"], {}, "error: flag --config.levels=x: invalid literal for int()"),
    ("imp_mlp", ["--config.rewind=1epoch"], {}, "error: step spec '1epoch' is not a step count"),
    ("transfer", ["--config=transfer_digits", "--workdir={run}"], {}, "holds a parallel_tasks run"),
    ("transfer", ["--config=transfer_digits", "--config.target_optimizer=rmsprop"], {}, "'rmsprop'"),
    ("transfer", ["--config=transfer_digits", "--config.targets=nonexistent_ds"], {}, "nonexistent_ds"),
    ("thesis_sweep", ["--config=thesis_sweep_e1", "--workdir={run}"], {}, "holds a parallel_tasks run"),
    ("thesis_sweep", ["--config=thesis_sweep_e1", "--config.experiment.seeds=-2"], {}, "seeds=-2"),
    ("thesis_sweep", ["--config=thesis_sweep_e5"], {}, "thesis_sweep_e5"),
    ("report", ["--workdirs=/nonexistent/run", "--out={new}"], {}, "/nonexistent/run"),
    ("instability", ["--config.rewind_steps=0,1epoch"], {}, "--config.rewind_steps=0,1epoch: '1epoch'"),
    ("instability", ["--config.rewind_steps=0,100ep"], {}, "--config.rewind_steps=0,100ep: give steps before the end"),
    ("instability", ["--config.noise=loud"], {}, "--config.noise='loud'"),
    ("instability", ["--config.threshold=2"], {}, "--config.threshold=2"),
    ("instability", ["--config.alphas=1"], {}, "--config.alphas=1"),
    ("instability", ["--config.levels=-1"], {}, "--config.levels="),
    ("instability", ["--config.source_workdir={new}"], {}, "has no find_ticket run for seed 0"),
    ("instability", ["--config.source_workdir={new}", "--config.seeds=()"], {}, "is not a find_ticket workdir"),
    ("instability", ["--workdir={run}"], {}, "holds a parallel_tasks run"),
    ("find_ticket", ["--config=find_ticket_digits_lenet", "--config.rewind=auto", "--config.auto_rewind.rewind_steps=x"], {},
     "rewind_steps=x"),
    ("fidelity", ["--config.points=w31"], {}, "'w31'"),
    ("fidelity", ["--config.seeds=0"], {}, "--config.seeds=0"),
    ("fidelity", ["--config.thesis_results=/nonexistent/thesis.jsonl"], {}, "/nonexistent/thesis.jsonl"),
    # levels against the recipe or the grid, refused before the first point or level runs
    ("instability", ["--config.levels=0,16"], {}, "--config.levels=0,16"),  # the recipe prunes 15 levels
    ("transfer", ["--config=transfer_digits", "--config.levels=0,11"], {}, "level 11 does not exist"),  # the recipe prunes 10
    ("thesis_sweep", ["--config=thesis_sweep_e1", "--config.extension_levels=0,-1"], {}, "--config.extension_levels=0,-1: -1 is negative"),
    ("thesis_sweep", ["--config=thesis_sweep_e1", "--config.extension_levels=0,100"], {},
     "--config.extension_levels=0,100: point ext_100: its network makes a model of"),
    ("thesis_sweep", ["--config=thesis_sweep_e1", "--config.extension_levels=0,x"], {}, "--config.extension_levels=0,x: 'x' is not"),
    ("thesis_sweep", ["--config=thesis_sweep_e4", "--config.widths=38", "--config.level_counts=1,0"], {},
     "--config.widths=38 --config.level_counts=1,0: point w38_L00: levels=0 cannot reach target=112"),
    ("fidelity", ["--config.points=ext1,w38_L0"], {}, "--config.points=ext1,w38_L0: point w38_L0: levels=0 cannot reach"),
    ("fidelity", ["--config.points=e2_ext200"], {}, "--config.points=e2_ext200: point e2_ext200: "),
    ("parallel_tasks", ["--config.batch_order=shared", "--config.shared_order=-1"], {}, "shared_order=-1 is not an integer from 0 to 65535"),
    ("parallel_tasks", ["--config.shared_order=2"], {}, "shared_order=2 numbers the orders of batch_order='shared'"),
    ("fidelity", ["--config.shared_orders=-1"], {}, "--config.shared_orders=-1: give a number of shared orders"),
    ("fidelity", ["--config.shared_orders=2", "--config.shared_seeds=0"], {}, "--config.shared_seeds=0: give a number of seeds"),
    ("transfer_claims", ["--config.seeds=3"], {}, "--config.seeds=[3]: intervals over seeds need at least two"),
    ("transfer_claims", ["--config.levels=0"], {}, "--config.levels=0: a claims study needs at least one pruned level"),
]

# Every bad value the commands share (experiments/checks.py), tried on every command: a negative value in
# each seed field of its config, an empty --workdir (and --data_dir, report's --out), a config file whose
# get_config() returns a dict. The commands that need a --config get a preset.
PRESETS = {"find_ticket": "find_ticket_digits_lenet", "transfer": "transfer_digits", "thesis_sweep": "thesis_sweep_e1"}
SEED_FIELDS = {
    "find_ticket": ("seed", "training.data_seed"),
    "transfer": ("seeds", "recipe.seed", "recipe.training.data_seed"),
    "parallel_tasks": ("seeds", "data_seed"),
    "thesis_sweep": ("experiment.seeds", "experiment.data_seed"),
    "imp_mlp": ("seed", "data_seed"),
    "fidelity": ("seeds", "structure_seed", "thesis_seeds"),
    "instability": ("seeds", "recipe.seed", "recipe.training.data_seed"),
    "transfer_claims": ("seeds", "models.vgg.training.data_seed", "models.resnet.seed"),
}
DATA_DIR = ("find_ticket", "transfer", "parallel_tasks", "instability")  # the commands with --data_dir


def _preset(script):
    return [f"--config={PRESETS[script]}"] if script in PRESETS else []


SHARED = [
    *((s, [*_preset(s), f"--config.{f}=-1"], {}, f"--config.{f}=-1: -1 is negative") for s, fields in SEED_FIELDS.items() for f in fields),
    *((s, [*_preset(s), "--workdir="], {}, "--workdir= is empty") for s in SEED_FIELDS),
    *((s, ["--config={dict_py}"], {}, "--config={dict_py}: its get_config() returns a dict, not an ml_collections.ConfigDict")
      for s in SEED_FIELDS),
    *((s, [*_preset(s), "--data_dir="], {}, "--data_dir= is empty") for s in DATA_DIR),
    ("report", ["--workdirs=/nonexistent/run", "--out="], {}, "--out= is empty"),
    ("report", ["--workdirs="], {}, "--workdirs names no workdir"),
    ("transfer", ["--config=transfer_digits", "--target_config={dict_py}"], {}, "--target_config={dict_py}: its get_config() returns a dict"),
    ("imp_mlp", ["--config={none_py}"], {}, "--config={none_py}: its get_config() returns None"),
    ("imp_mlp", ["--config={negative_seed_py}"], {}, "--config.seed=-3: -3 is negative"),  # from the file, named as a flag
    ("imp_mlp", ["--config.data_seed=4294967296"], {}, "--config.data_seed=4294967296: 4294967296 is too large"),
    ("transfer", ["--config=transfer_digits", "--config.seeds=0,x"], {}, "--config.seeds=0,x: 'x' is not an integer"),
    ("instability", ["--config=instability_moons_circles", "--config.recipe.seeds=0,-1"], {}, "--config.recipe.seeds=0,-1: -1 is negative"),
]


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished parallel-task run, made from an empty directory that it leaves empty (it writes only its workdir)."""
    run, cwd = tmp_path_factory.mktemp("finished") / "run", tmp_path_factory.mktemp("cwd")
    proc = subprocess.run([sys.executable, "-m", "experiments.parallel_tasks", f"--workdir={run}", "--config.epochs=1",
                           "--config.extension_level=1", "--config.seeds=0"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert not list(cwd.iterdir())
    return run


def _problems(result: dict, expected: str, written: list) -> list[str]:
    """What a refused case did wrong: ``result`` as the fuzz runner gives it, ``written``: the paths it
    created (its workdir, a directory it must not create, anything in the directory it ran from)."""
    lines = result["stderr"].strip().splitlines()
    problems = []
    if result["returncode"] == 0:
        problems.append("exit status 0")
    if "Traceback (most recent call last)" in result["stderr"]:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if not lines or not lines[-1].startswith("error: ") or expected not in lines[-1]:
        problems.append(f"no line 'error: ...{expected}...'")
    if written:
        problems.append(f"wrote {', '.join(map(str, written))}")
    return problems


def test_the_fuzz_checks_can_fail():
    good = {"returncode": 1, "stdout": "", "stderr": "error: --workdir= is empty\n"}
    assert _problems(good, "--workdir= is empty", []) == []
    assert _problems({**good, "returncode": 0}, "--workdir= is empty", []) == ["exit status 0"]
    traceback = {**good, "stderr": "Traceback (most recent call last):\n  ...\nValueError: x\nerror: --workdir= is empty\n"}
    assert _problems(traceback, "--workdir= is empty", [])[:2] == ["a traceback", "4 lines on stderr"]
    assert _problems(good, "--config.seed=-1", []) == ["no line 'error: ...--config.seed=-1...'"]
    assert _problems({**good, "stderr": "--workdir= is empty\n"}, "--workdir= is empty", []) == ["no line 'error: ...--workdir= is empty...'"]
    assert _problems(good, "--workdir= is empty", ["cwd/config.json"]) == ["wrote cwd/config.json"]


def _written(case_dirs: dict) -> list:
    """What a case created: its workdir or {new} directory (even empty), anything in the directory it ran from."""
    made = [case_dirs[k] for k in ("work", "new") if case_dirs[k].exists()]
    return made + sorted(case_dirs["cwd"].iterdir())


def test_malformed_input_is_one_line_and_changes_nothing(tmp_path, finished_run):
    cases_in = CASES + SHARED
    assert len(CASES) >= 40 and {c[0] for c in SHARED} == {*SEED_FIELDS, "report"} == {p.stem for p in (REPO / "experiments").glob("*.py")} - {
        "__init__", "cli", "checks"}
    places = {"file": tmp_path / "a_file", "run": finished_run, "bad_py": tmp_path / "bad_config.py", "no_get": tmp_path / "no_get_config.py",
              "raising_py": tmp_path / "raising_config.py", "dict_py": tmp_path / "dict_config.py", "none_py": tmp_path / "none_config.py",
              "negative_seed_py": tmp_path / "negative_seed_config.py"}
    places["file"].write_text("not a directory\n")
    places["bad_py"].write_text("def get_config(:\n")
    places["no_get"].write_text("X = 1\n")
    places["raising_py"].write_text("def get_config():\n    return 1 / 0\n")
    places["dict_py"].write_text("def get_config():\n    return {'seed': 0, 'workdir': 'runs'}\n")
    places["none_py"].write_text("def get_config():\n    pass\n")
    places["negative_seed_py"].write_text("from lth_jax import imp_mlp\n\n\ndef get_config():\n    c = imp_mlp.default_config()\n"
                                          "    c.seed = -3\n    return c\n")
    before = _snapshot(finished_run)
    cases, dirs = [], []
    for i, (script, args, env, _) in enumerate(cases_in):
        case_dirs = {"work": tmp_path / "work" / str(i), "new": tmp_path / "new" / str(i), "cwd": tmp_path / "cwd" / str(i)}
        case_dirs["cwd"].mkdir(parents=True)
        args = [a.format(**places, new=case_dirs["new"]) for a in args]
        if not any(a.startswith("--workdir") for a in args) and script != "report":
            args.append(f"--workdir={case_dirs['work']}")
        cases.append({"script": script, "args": args, "env": env, "cwd": str(case_dirs["cwd"])})
        dirs.append(case_dirs)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    runner = subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_runner.py"), str(tmp_path / "cases.json"),
                             str(tmp_path / "results.json")], cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env())
    assert runner.returncode == 0, runner.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    failures = []
    for (script, _, _, expected), case, result, case_dirs in zip(cases_in, cases, results, dirs):
        problems = _problems(result, expected.format(**places, new=case_dirs["new"]), _written(case_dirs))
        if problems:
            failures.append(f"{script} {' '.join(case['args'])}: {'; '.join(problems)}; stderr {result['stderr'][-600:]!r}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)
    assert _snapshot(finished_run) == before  # the finished run is byte for byte what it was
    assert places["file"].read_text() == "not a directory\n"


def _script(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.parallel_tasks", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=script_env())


def test_divergence_stops_the_seed_and_is_one_line(tmp_path, finished_run):
    workdir = tmp_path / "diverged"
    proc = _script(f"--workdir={workdir}", "--config.epochs=40", "--config.extension_level=1", "--config.seeds=0,1",
                   "--config.learning_rate=1e6")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: seed 0 diverged at level 0 (test loss") and "learning_rate=1e+06" in lines[0]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["level"], r["status"], r["diverged"]) for r in rows] == [(0, 0, "diverged", True), (1, 0, "diverged", True)]
    assert rows[0]["epochs"] < 40  # early stopping ended the blown-up training
    summary = json.loads((workdir / "summary.json").read_text())["seeds"]
    assert {s["category"] for s in summary.values()} == {"Diverged"} and summary["0"]["diverged_level"] == 0
    assert " diverged " in proc.stdout  # the table says it too
    # a finished run asked again with the diverging rate is refused, byte for byte unchanged
    before = _snapshot(finished_run)
    again = _script(f"--workdir={finished_run}", "--config.epochs=1", "--config.extension_level=1", "--config.seeds=0",
                    "--config.learning_rate=1e6")
    assert again.returncode == 1 and "this run asks experiment.learning_rate=1000000.0" in again.stderr
    assert _snapshot(finished_run) == before


def test_a_metrics_file_cut_short_is_rebuilt_and_said(tmp_path, finished_run):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(finished_run, workdir)
    complete = (workdir / "metrics.jsonl").read_text()
    (workdir / "metrics.jsonl").write_text(complete[:100])
    proc = _script(f"--workdir={workdir}", "--config.epochs=1", "--config.extension_level=1", "--config.seeds=0")
    assert proc.returncode == 0, proc.stderr
    assert f"note: {workdir}/metrics.jsonl was cut short at line 1 (0 complete rows before it)" in proc.stdout
    assert (workdir / "metrics.jsonl").read_text() == complete


def test_a_diverging_find_ticket_stops_at_the_epoch_and_is_one_line(tmp_path):
    workdir = tmp_path / "diverged"
    proc = subprocess.run([sys.executable, "-m", "experiments.find_ticket", "--config=find_ticket_digits_lenet", f"--workdir={workdir}",
                           "--config.training.epochs=4", "--config.pruning.levels=2", "--config.optimizer.learning_rate=1e4"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env())
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: seed 0 diverged at level 0 (") and "--config.optimizer.learning_rate=10000" in lines[0]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["level"], r["diverged"], r["epoch"]) for r in rows] == [(0, True, 1)]  # stopped in its first epoch, nothing pruned
    assert "DIVERGED" in proc.stdout


def test_the_disk_estimate_bounds_what_a_run_writes_and_refuses_what_does_not_fit(finished_run, tmp_path):
    from lth_jax.errors import UserError
    from lth_jax.sizes import check_disk, disk_bytes

    config = json.loads((finished_run / "config.json").read_text())
    shape, levels = config["shape"], len(config["trajectory"])
    parameters = sum(a * b + b for a, b in zip(shape[:-1], shape[1:]))
    written = sum(p.stat().st_size for p in finished_run.rglob("*") if p.is_file())
    assert written <= disk_bytes(parameters, levels, 1, config["experiment"]["epochs"]) <= 20 * written
    need = disk_bytes(parameters, levels, 1, 1)
    check_disk(parameters, levels, 1, 1, finished_run, "extension_level=1", free=need - written)  # what is written counts
    with pytest.raises(UserError, match=r"^extension_level=1 writes up to 2.0 MiB to .*new \(2 levels × 1 seeds of 182 parameters\), "
                                        r"more than the 1,000 bytes free there"):
        check_disk(parameters, levels, 1, 1, tmp_path / "new", "extension_level=1", free=1000)
