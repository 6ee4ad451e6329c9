"""The CI recipe runs: examples/energy-ci.yml's own commands, run here with a smaller prompt subset.

Every step whose id starts with ``energy-`` is run with bash, as the workflow's runner would (``bash -e``),
in a fresh folder, with the workflow's environment; only the subset's size, the new tokens and the
threshold are made smaller or wider, so the whole recipe takes seconds on a shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "energy-ci.yml"
#: what this test changes in the workflow's environment: 6 prompts, 3 new tokens, 1 warm-up, a wider threshold
SMALL = {"ENERGY_SETTINGS": "--model smollm2-135m --task chat --max-new-tokens 3 --warmup 1",
         "ENERGY_LIMIT": "6", "ENERGY_THRESHOLD": "25%"}


def _steps() -> list[tuple[str, str]]:
    workflow = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    return [(step["id"], step["run"]) for job in ("baseline", "energy") for step in workflow["jobs"][job]["steps"]
            if str(step.get("id", "")).startswith("energy-")]


def _shims(folder: Path) -> Path:
    """``joulescore`` and ``python`` on PATH as this checkout's (the workflow installs them with pip)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, line in (("joulescore", f'exec "{sys.executable}" -m joulescore.cli "$@"'),
                       ("python", f'exec "{sys.executable}" "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_the_ci_recipe_runs_here(tmp_path: Path) -> None:
    workflow = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    env = {**os.environ, **{k: str(v) for k, v in workflow["env"].items()}, **SMALL,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env["PATH"] = f"{_shims(tmp_path)}{os.pathsep}{env['PATH']}"
    steps = _steps()
    assert [name for name, _ in steps] == ["energy-baseline", "energy-candidate", "energy-compare"]
    outputs = {}
    for name, script in steps:
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        outputs[name] = proc.stdout
    baseline = json.loads((tmp_path / "ci" / "energy-baseline.json").read_text())
    assert baseline["per_prompt"]["energy_j"] and baseline["counts"]["prompts"] == 6
    assert "within budget" in outputs["energy-candidate"]
    last = outputs["energy-compare"].strip().splitlines()[-1]
    assert last.split(":")[0] in ("no change", "inconclusive"), outputs["energy-compare"]
    assert "interleaved: new runs" in outputs["energy-compare"]
