"""``ppl-vi models`` lists every zoo model with its latent sites, conjugacy and reference."""

from __future__ import annotations

import re

import models
from ppl_vi.cli import main


def test_models_command_lists_the_whole_zoo(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "latent", "sites", "conjugate", "reference"]
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}
    assert set(rows) == set(models.names())
    for name, (sites, conjugate, reference) in rows.items():
        zoo = models.get(name)
        assert sites.split(", ") == list(zoo.latent_sites)
        assert conjugate == ("yes" if zoo.conjugate else "no")
        assert reference == zoo.reference
