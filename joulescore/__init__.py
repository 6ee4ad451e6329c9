"""joulescore: measure and rate the energy of AI inference."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The measuring API is imported on first use, so `import joulescore` stays light.
_LAZY = {"measure": "joulescore.meters.monitor", "Monitor": "joulescore.meters.monitor",
         "select_meter": "joulescore.meters", "Measurement": "joulescore.meters.base",
         "Domain": "joulescore.meters.base"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'joulescore' has no attribute {name!r}")
