"""The README as a user reads it: its Python runs, its links stay inside the repository."""

import re

from conftest import REPO

README = (REPO / "README.md").read_text()


def test_the_readme_python_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)  # the examples write runs/ where they run
    namespace = {"__name__": "__main__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "all prunable" in out and namespace["report"].status in ("interconnected", "split", "degraded")
    assert (tmp_path / "runs" / "nb" / "level_08" / "ticket" / "ticket.json").exists()


def test_links_stay_inside_the_repository():
    for page in ("README.md", "docs/method.md"):
        text = (REPO / page).read_text()
        assert "../" not in text, f"{page} points outside the repository"
        for target in re.findall(r"\]\(([^)]+)\)", text):
            if not target.startswith(("http://", "https://", "#")):
                assert (REPO / page).parent.joinpath(target.split("#")[0]).exists(), f"{page} links to a missing {target}"
    assert "docs/method.md" in README
