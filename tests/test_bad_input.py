"""Malformed input to every command ends in exactly one line on stderr that names it, a non-zero exit,
and a workdir left as it was (no file changed, no temporary file left).

The cases run through ``tests/fuzz_runner.py``: one process imports the packages, and every case is a
forked child that runs ``python -m experiments.<script> ...`` (about a second each instead of five).
"""

import json
import subprocess
import sys

import pytest
from conftest import REPO, script_env

# (script, arguments, environment, what the one line must contain). {new}: a directory that does not
# exist; {file}: a regular file; {run}: a finished parallel-task run; {bad_py}/{no_get}: broken config files.
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
    ("imp_mlp", ["--config.levels=-1"], {}, "--config.levels=-1"),
    ("imp_mlp", ["--config.optimizer=rmsprop"], {}, "'rmsprop'"),
    ("imp_mlp", ["--config.shape=4,8,3"], {}, "--config.shape="),
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
]


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = subprocess.run([sys.executable, "-m", "experiments.parallel_tasks", f"--workdir={run}", "--config.epochs=1",
                           "--config.extension_level=1", "--config.seeds=0"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr
    return run


def test_malformed_input_is_one_line_and_changes_nothing(tmp_path, finished_run):
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) >= 6
    places = {"new": tmp_path / "new", "file": tmp_path / "a_file", "run": finished_run,
              "bad_py": tmp_path / "bad_config.py", "no_get": tmp_path / "no_get_config.py",
              "raising_py": tmp_path / "raising_config.py"}
    places["file"].write_text("not a directory\n")
    places["bad_py"].write_text("def get_config(:\n")
    places["no_get"].write_text("X = 1\n")
    places["raising_py"].write_text("def get_config():\n    return 1 / 0\n")
    before = _snapshot(finished_run)
    cases = []
    for script, args, env, _ in CASES:
        args = [a.format(**places) for a in args]
        if not any(a.startswith("--workdir") for a in args) and script != "report":
            args.append(f"--workdir={places['new']}")
        cases.append({"script": script, "args": args, "env": env})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    runner = subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_runner.py"), str(tmp_path / "cases.json"),
                             str(tmp_path / "results.json")], cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env())
    assert runner.returncode == 0, runner.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    failures = []
    for (script, args, _, expected), case, result in zip(CASES, cases, results):
        lines = result["stderr"].strip().splitlines()
        expected = expected.format(**places)
        if result["returncode"] == 0 or len(lines) != 1 or expected not in lines[0] or not lines[0].startswith("error: "):
            failures.append(f"{script} {' '.join(case['args'])}: exit {result['returncode']}, stderr {result['stderr'][-600:]!r}")
    assert not failures, "\n".join(failures)
    assert _snapshot(finished_run) == before  # the finished run is byte for byte what it was
    new = places["new"]
    leftovers = [p for p in new.rglob("*") if p.is_file()] if new.exists() else []
    assert not leftovers, leftovers  # no refused command wrote into a new workdir


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
