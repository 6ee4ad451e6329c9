"""What the local engines share, checked without loading any engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from joulescore.backends.hf_common import OFFLINE_ENV, offline_env

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
