"""Fake powercap trees on disk (real files, the layout Linux uses) for RAPL tests."""

from __future__ import annotations

import os
from pathlib import Path

REAL_MAX_UJ = 262143328850  # a typical Intel package max_energy_range_uj


def add_zone(root: Path, zone_id: str, name: str, energy_uj: int = 0, max_uj: int = REAL_MAX_UJ) -> Path:
    zone = root / zone_id
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{name}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def set_uj(root: Path, zone_id: str, energy_uj: int) -> None:
    """Replace the counter atomically, as sysfs does (a poller may read at any moment)."""
    tmp = root / zone_id / "energy_uj.tmp"
    tmp.write_text(f"{energy_uj}\n")
    os.replace(tmp, root / zone_id / "energy_uj")


def server_tree(root: Path) -> Path:
    """Two packages, each with core/uncore/dram sub-zones, and a psys platform zone."""
    add_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    add_zone(root, "intel-rapl:0:0", "core", 500_000)
    add_zone(root, "intel-rapl:0:1", "uncore", 100_000)
    add_zone(root, "intel-rapl:0:2", "dram", 300_000)
    add_zone(root, "intel-rapl:1", "package-1", 2_000_000)
    add_zone(root, "intel-rapl:1:0", "core", 700_000)
    add_zone(root, "intel-rapl:1:1", "dram", 400_000)
    add_zone(root, "intel-rapl:2", "psys", 9_000_000)
    return root
