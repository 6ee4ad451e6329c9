"""CPU package and DRAM energy from RAPL counters, read through Linux powercap.

Layout (``/sys/class/powercap``, or ``$JOULESCORE_POWERCAP_ROOT``)::

    intel-rapl:0        name=package-0   -> cpu    (counted)
    intel-rapl:0:0      name=core        -> inside package-0, never added
    intel-rapl:0:1      name=uncore      -> inside package-0, never added
    intel-rapl:0:2      name=dram        -> dram   (counted separately)
    intel-rapl:1        name=psys        -> whole platform, overlaps packages: never added

AMD CPUs use the same ``intel-rapl`` names; an ``amd-rapl`` tree is read
when there is no ``intel-rapl`` one.  Each counter is cumulative microjoules
that wraps at ``max_energy_range_uj``; a background poller reads it often
enough that no wrap can be missed even over hours.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from joulescore.errors import MeterUnavailable
from joulescore.meters.base import Domain, Meter, MeterStatus, Provenance, Reading, now_s
from joulescore.meters.poller import Poller

DEFAULT_ROOT = "/sys/class/powercap"
#: A conservative ceiling on one zone's power, used only to pick the poll rate.
MAX_ZONE_POWER_W = 500.0
#: Reads per wrap period: several, so a late or skipped tick still cannot miss one.
READS_PER_WRAP = 4
#: The slowest poll, even for huge ranges: a typical 262 kJ package range wraps
#: after ~9 min at 500 W, so 10 s keeps many reads per wrap even if the power
#: ceiling above were ten times too low, while waking the process rarely.
MAX_POLL_INTERVAL_S = 10.0
MIN_POLL_INTERVAL_S = 0.001
_ZONE_DIR = re.compile(r"^(intel-rapl|amd-rapl):(\d+(?::\d+)*)$")


class RaplUnavailable(MeterUnavailable):
    """RAPL cannot be used here; the message says why and, if possible, how to fix it."""


def powercap_root() -> Path:
    return Path(os.environ.get("JOULESCORE_POWERCAP_ROOT", DEFAULT_ROOT))


@dataclass(frozen=True)
class Zone:
    """One powercap zone: where it is, what it is, and whether it is counted."""

    path: Path
    zone_id: str  # e.g. "intel-rapl:0:2"
    name: str  # the zone's own name file: package-0, dram, core, psys, ...
    max_range_uj: int

    @property
    def domain(self) -> Domain | None:
        """The domain this zone is counted in, or None if counting it would double count."""
        if self.name.startswith("package"):
            return Domain.CPU
        if self.name == "dram":
            return Domain.DRAM
        return None  # core/uncore sit inside a package; psys overlaps every package

    @property
    def label(self) -> str:
        return f"{self.name} ({self.zone_id})"


def _access_message(path: Path) -> str:
    return (
        f"cannot read {path}: permission denied (RAPL energy is root-only since Linux 5.10, "
        "CVE-2020-8694). Grant read access with `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
        "/sys/class/powercap/intel-rapl:*:*/energy_uj` (until reboot), a udev rule such as "
        "`SUBSYSTEM==\"powercap\", ACTION==\"add\", RUN+=\"/bin/chmod o+r /sys%p/energy_uj\"`, or run as root"
    )


def read_uj(path: Path) -> int:
    """One counter in microjoules; any failure is a RaplUnavailable with the reason."""
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise RaplUnavailable(_access_message(path)) from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise RaplUnavailable(_access_message(path)) from None
        raise RaplUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise RaplUnavailable(f"{path} does not hold an integer") from None


def _zone_key(zone_id: str) -> tuple[int, ...]:
    return tuple(int(x) for x in zone_id.split(":")[1:])


def discover_zones(root: Path | None = None) -> list[Zone]:
    """Every RAPL zone under the powercap root, packages first, in numeric order."""
    root = root or powercap_root()
    if not root.is_dir():
        raise RaplUnavailable(f"no powercap interface at {root} (no RAPL driver, a VM, or not Linux)")
    found: dict[str, list[Path]] = {"intel-rapl": [], "amd-rapl": []}
    for entry in root.iterdir():
        m = _ZONE_DIR.match(entry.name)
        if m:
            found[m.group(1)].append(entry)
    entries = found["intel-rapl"] or found["amd-rapl"]
    if not entries:
        raise RaplUnavailable(f"no intel-rapl or amd-rapl zones under {root}")
    zones: list[Zone] = []
    seen: set[str] = set()
    for entry in entries:
        real = os.path.realpath(entry)
        if real in seen:
            continue
        seen.add(real)
        try:
            name = (entry / "name").read_text().strip()
        except OSError as exc:
            raise RaplUnavailable(f"cannot read {entry / 'name'}: {exc.strerror or exc}") from None
        try:
            max_range = int((entry / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            raise RaplUnavailable(f"cannot read {entry / 'max_energy_range_uj'}: wraps could not be handled") from None
        zones.append(Zone(entry, entry.name, name, max_range))
    return sorted(zones, key=lambda z: _zone_key(z.zone_id))


def poll_interval_s(zones: list[Zone], max_power_w: float = MAX_ZONE_POWER_W) -> float:
    """Often enough to see every wrap: a quarter of the shortest wrap period at max power, at most 10 s."""
    periods = [z.max_range_uj / 1e6 / max_power_w for z in zones if z.max_range_uj > 0]
    if not periods:
        return MAX_POLL_INTERVAL_S
    return max(MIN_POLL_INTERVAL_S, min(MAX_POLL_INTERVAL_S, min(periods) / READS_PER_WRAP))


class RaplMeter(Meter):
    """Cumulative package (cpu) and dram energy, wrap-corrected, each package counted once."""

    name = "rapl"

    def __init__(self, root: Path | None = None, max_power_w: float = MAX_ZONE_POWER_W) -> None:
        self.root = root or powercap_root()
        self.zones = discover_zones(self.root)
        self.counted = [z for z in self.zones if z.domain is not None]
        if not any(z.domain is Domain.CPU for z in self.counted):
            raise RaplUnavailable(f"no package zone under {self.root} (found: "
                                  f"{', '.join(z.label for z in self.zones)})")
        self._lock = threading.Lock()
        self._last = {z.zone_id: read_uj(z.path / "energy_uj") for z in self.counted}
        self._total_uj = {z.zone_id: 0 for z in self.counted}
        self.wraps = 0
        self.interval_s = poll_interval_s(self.counted, max_power_w)
        self._poller = Poller(self.interval_s, self._update, name="joulescore-rapl")

    def _update(self) -> None:
        """Fold the counters' progress since the last read into the running totals."""
        with self._lock:
            for z in self.counted:
                raw = read_uj(z.path / "energy_uj")
                delta = raw - self._last[z.zone_id]
                if delta < 0:  # wrapped once (the poll rate guarantees not twice)
                    delta += z.max_range_uj
                    self.wraps += 1
                self._total_uj[z.zone_id] += delta
                self._last[z.zone_id] = raw

    def start(self) -> None:
        self._update()
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()
        self._update()

    def read(self) -> Reading:
        self._update()
        with self._lock:
            t = now_s()
            energy = {Domain.CPU: 0.0}
            detail: dict[str, float] = {}
            for z in self.counted:
                joules = self._total_uj[z.zone_id] / 1e6
                assert z.domain is not None
                energy[z.domain] = energy.get(z.domain, 0.0) + joules
                detail[f"{z.domain.value}:{z.name}:{z.zone_id}"] = joules
        return Reading(t, energy, dict(energy), dict(energy), detail)

    def domains(self) -> frozenset[Domain]:
        """cpu always (a package zone is required); dram only where a dram zone exists."""
        return frozenset(z.domain for z in self.counted if z.domain is not None)

    def provenance(self) -> Provenance:
        skipped = [z for z in self.zones if z.domain is None]
        notes = ["package counters cover the whole socket (every process), not only the measured one"]
        if any(z.name == "psys" for z in skipped):
            notes.append("psys (platform) zone present but not added: it overlaps the packages")
        if any(z.name in ("core", "uncore") for z in skipped):
            notes.append("core/uncore sub-zones are inside their package and not added")
        notes.append(f"wrap-safe polling every {self.interval_s:.3g} s; {self.wraps} wrap(s) corrected")
        if self._poller.error is not None:
            notes.append(f"wrap poller stopped early ({self._poller.error}): a wrap after that may be missed")
        domains = {d.value: {"kind": "measured", "source": f"RAPL powercap ({self.root})"}
                   for d in {z.domain for z in self.counted if z.domain is not None}}
        return Provenance(
            kind="measured",
            sources=(f"RAPL via powercap {self.root}",),
            includes=tuple(f"{z.domain.value}: {z.label}" for z in self.counted if z.domain is not None),
            uncertainty_pct=0.0,
            notes=tuple(notes),
            domains=domains,
        )


def status() -> MeterStatus:
    """Whether RAPL is readable here, and why not."""
    covers: tuple[str, ...] = ("cpu", "dram")
    try:
        meter = RaplMeter()
    except RaplUnavailable as exc:
        return MeterStatus("rapl", False, str(exc), covers, "1 uJ counter, wrap-corrected", "measured")
    covers = tuple(sorted({z.domain.value for z in meter.counted if z.domain is not None}))
    zones = ", ".join(z.label for z in meter.counted)
    return MeterStatus("rapl", True, f"zones: {zones}", covers,
                       f"1 uJ counter (~1 ms hardware update), wrap poll {meter.interval_s:.3g} s", "measured")
