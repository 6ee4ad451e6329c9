"""Where a scraped meter reads its counter: the flags of ``--meter prometheus`` and ``--meter exporter``.

A plain type, so the run's settings (``model/config.py``) can carry it to the meters without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScrapeOptions:
    """The flags of ``--meter prometheus`` and ``--meter exporter``."""

    prometheus_url: str | None = None
    exporter_url: str | None = None
    preset: str | None = None
    query: str | None = None
    selector: str | None = None
    unit: str | None = None
    #: a long-running reader (the proxy): a failed or stale scrape after the start is a warning and a
    #: growing staleness, not an error; the figures wait for the source to come back
    keep_going: bool = False

    def given(self) -> list[str]:
        """The flags given, as the user wrote them (a local meter takes none of them)."""
        names = ("prometheus_url", "exporter_url", "preset", "query", "selector", "unit")
        return ["--" + n.replace("_", "-") for n in names if getattr(self, n) is not None]
