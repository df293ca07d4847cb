"""``pip install`` gives console scripts that work from any directory, and their help
shows every flag the README uses."""

import re
import site
import subprocess
import sys

from conftest import REPO, script_env

SCRIPTS = {"find_ticket": "lth-find-ticket", "transfer": "lth-transfer", "parallel_tasks": "lth-parallel-tasks",
           "thesis_sweep": "lth-sweep", "imp_mlp": "lth-imp-mlp", "report": "lth-report",
           "fidelity": "lth-fidelity", "instability": "lth-instability"}


def readme_flags() -> dict[str, set[str]]:
    """The flags (not ``--config.*`` fields) the README passes to each script."""
    text = REPO.joinpath("README.md").read_text().replace("\\\n", " ")
    used = {name: set() for name in SCRIPTS}
    for line in text.splitlines():
        for name, script in SCRIPTS.items():
            if f"experiments.{name} " in line or f"{script} " in line:
                used[name] |= {flag for flag in re.findall(r"(--[a-z_]+)(?==|\s|$)", line)}
    return used


def test_console_scripts_of_an_installed_lth_jax_work_outside_the_repository(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The dependencies are those of the test environment; what is installed is the package itself.
    (next(venv.glob("lib/python*/site-packages")) / "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
                             capture_output=True, text=True, timeout=300, env=script_env(PYTHONPATH=""))
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = script_env(PYTHONPATH="")
    used = readme_flags()
    assert used["find_ticket"] >= {"--config", "--workdir", "--multihost"} and used["transfer"] >= {"--config", "--workdir"}
    for name, script in SCRIPTS.items():
        proc = subprocess.run([str(venv / "bin" / script), "--helpshort"], cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env)
        shown = set(re.findall(r"^\s+--(?:\[no\])?([a-z_]+)", proc.stdout, flags=re.M))
        missing = {flag for flag in used[name] if flag[2:] not in shown}
        assert not missing, f"{script} --helpshort lacks {missing}:\n{proc.stdout}{proc.stderr}"
    run = subprocess.run([str(venv / "bin" / "lth-find-ticket"), "--config=find_ticket_digits_lenet", "--config.training.epochs=1",
                          "--config.rewind=0", "--config.pruning.levels=1", f"--workdir={tmp_path / 'run'}"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert "level  1  weights" in run.stdout and (tmp_path / "run" / "level_01" / "ticket" / "ticket.json").exists()
