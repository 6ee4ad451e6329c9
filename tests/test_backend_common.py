"""What the local engines share, checked without loading any engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from joulescore.backends.base import context_overflow
from joulescore.backends.hf_common import OFFLINE_ENV, offline_env, overflow

REPO = Path(__file__).resolve().parents[1]


def test_importing_hf_common_leaves_the_environment_alone() -> None:
    code = ("import json, os; before = dict(os.environ); import joulescore.backends.hf_common; "
            "print(json.dumps([k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)]))")
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV} | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=REPO)
    assert json.loads(out.stdout) == []


def test_offline_env_is_set_at_load_time_without_overriding_the_user(monkeypatch) -> None:
    for key in OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    offline_env()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["TQDM_DISABLE"] == "0"


def test_one_context_check_for_every_engine() -> None:
    assert context_overflow(100, 28, 128) is None
    assert context_overflow(100, 29, 128) == "prompt of 100 tokens + 29 new exceeds the context of 128"
    assert overflow(100, [90, 100], 28, 128) is None
    failed = overflow(100, [90, 100], 29, 128)
    assert failed is not None and [g.input_tokens for g in failed] == [90, 100]
    assert all(g.finish_reason == "error" and g.error == context_overflow(100, 29, 128) for g in failed)
