"""Smoke test of examples/diffusion_digits.py: report contents and exact resume.

Marked slow (three short training runs, about 20 s on a loaded 2-core machine)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "diffusion_digits.py"


def load_example():
    spec = importlib.util.spec_from_file_location("diffusion_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_report_and_exact_resume(tmp_path):
    example = load_example()
    common = ["--no-progress", "--eval-every", "10", "--sample-steps", "5", "--eval-particles", "1",
              "--patience", "100", "--hidden", "32"]
    default_dtype = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32)
        example.main(common + ["--max-steps", "20", "--out", str(tmp_path / "straight")])
        example.main(common + ["--max-steps", "10", "--out", str(tmp_path / "resumed")])
        example.main(common + ["--max-steps", "20", "--out", str(tmp_path / "resumed"), "--resume"])
    finally:
        torch.set_default_dtype(default_dtype)
    report = json.loads((tmp_path / "straight" / "report.json").read_text())
    assert set(report["test_bpd_by_num_steps"]) == {"10", "100", "1000", "inf"}
    assert 0 <= report["test_bpd"]["total"] <= 2 * math.log2(17)
    assert report["baselines_test_bpd"]["per_pixel_categorical"] == pytest.approx(2.43, abs=0.05)
    assert (tmp_path / "straight" / "samples.png").stat().st_size > 0
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("straight", "resumed"))
    assert all(torch.equal(a["chain"][k], b["chain"][k]) for k in a["chain"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
