"""Sweep plans whose size or repeats a user did not mean: refused in one line before any variant is built
(issue 23)."""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, cli, cli_in_process

from joulescore.model.config import MAX_SWEEP_VARIANTS


def _plan(path: Path, models: int, engines: int, batches: int) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "big", "task": "chat",
        "models": [f"/nonexistent/m{i}.gguf" for i in range(models)],
        "batch_sizes": list(range(1, batches + 1)),
        "engines": [{"name": f"e{i}", "backend": "llama.cpp"} for i in range(engines)],
    }))
    return path


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return conn.execute("SELECT COUNT(*) FROM sweep_variants").fetchone()[0] if "sweep_variants" in tables else 0


def test_a_million_variant_grid_is_refused_before_it_expands(tmp_path: Path, db: Path) -> None:
    plan = _plan(tmp_path / "big.yaml", 100, 100, 100)
    start = time.monotonic()
    res = cli("sweep", str(plan), db=db, timeout=120)
    assert_one_line_error(res, "1,000,000 variants (100 models x 100 engines x 100 batch sizes)",
                          f"over the limit of {MAX_SWEEP_VARIANTS}", "--max-variants 1000000")
    assert time.monotonic() - start < 20  # it took 35 s to validate before the first variant ran
    assert _stored(db) == 0


def test_the_limit_is_counted_without_expanding(tmp_path: Path) -> None:
    from joulescore.bench.sweep import load_plan
    from joulescore.errors import BadInput

    plan = _plan(tmp_path / "huge.yaml", 1000, 100, 1000)  # 10**8 variants: expanding would never finish
    tracemalloc.start()
    with pytest.raises(BadInput, match="100,000,000 variants"):
        load_plan(plan)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100 * 2**20  # the plan itself, not its grid


def test_max_variants_sets_the_limit_both_ways(tmp_path: Path, db: Path) -> None:
    plan = _plan(tmp_path / "small.yaml", 1, 3, 3)
    assert_one_line_error(cli_in_process("sweep", str(plan), "--max-variants", "8", db=db),
                          "9 variants", "over the limit of 8")
    assert_one_line_error(cli_in_process("sweep", str(plan), "--max-variants", "0", db=db), "--max-variants")
    assert _stored(db) == 0
    # at the limit the plan runs: each variant stored (failed: its model is missing)
    cli_in_process("sweep", str(plan), "--max-variants", "9", db=db)
    assert _stored(db) == 9
    # one over the default is refused without the flag
    over = _plan(tmp_path / "over.yaml", 1, 1, MAX_SWEEP_VARIANTS + 1)
    assert_one_line_error(cli_in_process("sweep", str(over), db=db), f"{MAX_SWEEP_VARIANTS + 1} variants")


@pytest.mark.parametrize(("text", "fragments"), [
    # the plan: the same model twice said "two engines share a name"
    ("models: [smollm2-135m, gemma3-270m, smollm2-135m]\nengines:\n  - {backend: llama.cpp}\n",
     ("line 2", "models.2", "'smollm2-135m' is listed twice (items 0 and 2)")),
    ("batch_sizes: [1, 4, 1]\nengines:\n  - {backend: llama.cpp}\n",
     ("line 2", "batch_sizes.2", "1 is listed twice (items 0 and 2)")),
    ("engines:\n  - {backend: llama.cpp}\n  - {backend: llama.cpp}\n",
     ("line 4", "engines.1", "the same engine as engines item 0")),
    ("engines:\n  - {backend: llama.cpp}\n  - {backend: llama.cpp, threads: 1}\n",
     ("line 4", "engines.1", "named 'llama.cpp' like engines item 0", "distinct `name:`")),
])
def test_repeats_in_a_plan_name_the_repeat(tmp_path: Path, db: Path, text: str, fragments: tuple[str, ...]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("task: chat\n" + text)
    run = cli if "models" in text else cli_in_process
    res = run("sweep", str(plan), db=db)
    assert_one_line_error(res, *fragments)
    assert "two engines share a name" not in res.stderr
    assert _stored(db) == 0
