"""End to end: ``ppl-vi compare`` writes a report into a temporary directory."""

from __future__ import annotations

import json

import pandas as pd

from ppl_vi.cli import main
from ppl_vi.diagnostics.methods import method_names


def test_compare_writes_report_files_and_rows(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["compare", "--model", "normal_known_variance", "--methods", "exact,cavi,broken_name",
            "--out", str(out), "--quiet"]
    assert main(argv) == 2  # unknown method: nothing is run, the valid names are listed
    valid = ", ".join(method_names())
    assert f"unknown method 'broken_name'; available: {valid}" in capsys.readouterr().err
    assert not out.exists()

    argv[4] = "exact,cavi"
    assert main(argv + ["--num-draws", "200", "--khat-seeds", "1"]) == 0
    for name in ("report.md", "table.csv", "summary.csv", "summary.json", "elbo_traces.png",
                 "marginals.png", "khat_errors.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert table[["method", "coordinate"]].values.tolist() == [["exact", "loc"], ["cavi", "loc"]]
    summary = json.loads((out / "summary.json").read_text())
    assert [m["method"] for m in summary["methods"]] == ["exact", "cavi"]
    assert all(m["status"] == "ok" for m in summary["methods"])
    text = (out / "report.md").read_text()
    assert "## Verdict" in text and "Trust **cavi**" in text and "![ELBO traces](elbo_traces.png)" in text
    assert "| cavi | loc |" in text

    # an existing report is never overwritten silently (checked before anything runs)
    assert main(argv) == 2
    assert "already exists; use --overwrite" in capsys.readouterr().err


def test_models_and_methods_subcommands(capsys):
    assert main(["models"]) == 0
    assert "normal_known_variance" in capsys.readouterr().out
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "svi:AutoLowRankMultivariateNormal" in out
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == method_names()
