"""Energy per request from a meter read continuously: intervals split among the requests in flight.

The meter is read at every request event (start, first token, end) and on a
tick, so time is cut into intervals that cover it without gaps or overlaps.
An interval with no request in flight is idle energy, kept apart and never
charged to a request.  An interval with requests in flight is split among
them by the batch rule (``bench.runner.run_batch``, weights by ``meters.base.shares``): requests still waiting
for their first token share the interval's prefill part by input tokens,
those streaming tokens share its decode part by output tokens.  The two
parts (and a third for non-streamed requests, whose phases the proxy cannot
see: weighted by input plus output tokens) get the interval in proportion to
how many requests are in each.

Token counts are known only when a request ends, so an interval is settled
once every request in it has ended; a request's energy is final once all its
intervals are.  When a request ends before that, ``on_ended`` gets its
provisional energy (unfinished peers weighted as equals), so it can be stored
at once; ``on_settled`` later gives the final figure.  Every joule read lands
in exactly one place (a request or idle), so the final parts add up to the
meter's total.  A scraped meter (Prometheus, an exporter) knows a moment's
counter only once a sample past it has come: an interval (idle ones too) is
settled only then, from the meter's final readings of its two edges, so the
parts still add up to the counter's difference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from joulescore.meters.base import Domain, Measurement, Meter, Reading, shares

Phase = Literal["prefill", "decode", "whole"]


@dataclass
class Tracked:
    """One request as the ledger sees it."""

    request_id: str
    streamed: bool
    phase: Phase
    started_s: float
    first_token_s: float | None = None
    ended_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    energy: Measurement = field(kw_only=True)  # its shares of the settled intervals, added up
    pending: int = 0  # intervals not yet settled

    def weight(self, phase: Phase) -> int:
        if phase == "prefill":
            return self.input_tokens
        if phase == "decode":
            return self.output_tokens
        return self.input_tokens + self.output_tokens


@dataclass
class _Interval:
    energy: Measurement
    members: dict[str, Phase]
    begin: Reading
    end: Reading


def split(members: dict[str, Phase], weight: Callable[[str, Phase], int]) -> dict[str, float]:
    """Each member's share of one interval: phase groups by head count, then tokens within a group."""
    groups: dict[Phase, list[str]] = {}
    for rid, phase in members.items():
        groups.setdefault(phase, []).append(rid)
    out: dict[str, float] = {}
    for phase, rids in groups.items():
        group_share = len(rids) / len(members)
        for r, share in zip(rids, shares([weight(r, phase) for r in rids])):
            out[r] = group_share * share
    return out


class Ledger:
    """Reads the meter at each event and settles intervals into requests and idle energy.

    ``on_ended`` gets each request as it ends, with its energy then and whether that is final;
    ``on_settled`` gets a request whose provisional energy has become final (once, later);
    ``on_idle`` gets each idle interval.  All are called under the ledger's lock, in event order.
    Thread-safe: the event loop and the ticker thread both call in.
    """

    def __init__(self, meter: Meter, on_settled: Callable[[Tracked], None],
                 on_idle: Callable[[Measurement, float], None],
                 on_ended: Callable[[Tracked, Measurement, bool], None] | None = None) -> None:
        self.meter = meter
        self._on_settled = on_settled
        self._on_idle = on_idle
        self._on_ended = on_ended
        self._lock = threading.Lock()
        self.first = meter.read()
        self._last = self.first
        self.live: dict[str, Tracked] = {}
        self._open: list[_Interval] = []
        self._idle_open: list[_Interval] = []
        self._nothing = Measurement.empty(meter.provenance())
        self.idle = self._nothing
        self.charged = self._nothing
        self.power_w: dict[Domain, float] = {}

    def _close(self) -> float:
        """Close the interval up to now and hand it to idle or to the requests in flight."""
        now = self.meter.read()
        energy = Measurement.between(self._last, now, self._nothing.provenance)  # provisional: never waits
        span_s = now.timestamp_s - self._last.timestamp_s
        if span_s > 0:
            self.power_w = {d: v / span_s for d, v in energy.energy_j.items()}
        members = {rid: t.phase for rid, t in self.live.items() if t.ended_s is None}
        interval = _Interval(energy, members, self._last, now)
        self._last = now
        if not members:
            self._idle_open.append(interval)
            self._settle_idle()
        else:
            self._open.append(interval)
            for rid in members:
                self.live[rid].pending += 1
        return now.timestamp_s

    def _final(self, interval: _Interval) -> Measurement | None:
        """The interval's energy from the meter's final readings, or None while its end is not yet settled."""
        if interval.end.timestamp_s > self.meter.settled_until_s():
            return None
        return Measurement.between(self.meter.revise(interval.begin), self.meter.revise(interval.end),
                                   self._nothing.provenance)

    def _settle_idle(self) -> None:
        while self._idle_open:
            energy = self._final(self._idle_open[0])
            if energy is None:
                return
            interval = self._idle_open.pop(0)
            self.idle = self.idle.plus(energy)
            self._on_idle(energy, interval.end.timestamp_s - interval.begin.timestamp_s)

    def start(self, request_id: str, streamed: bool) -> None:
        with self._lock:
            t = self._close()
            self.live[request_id] = Tracked(request_id, streamed, "prefill" if streamed else "whole", t,
                                            energy=self._nothing)

    def first_token(self, request_id: str) -> None:
        with self._lock:
            t = self._close()
            tracked = self.live[request_id]
            tracked.phase, tracked.first_token_s = "decode", t

    def tick(self) -> None:
        with self._lock:
            self._close()
            if self._open:
                self._settle(skip="")

    def end(self, request_id: str, input_tokens: int, output_tokens: int) -> tuple[Measurement, bool]:
        """The request has ended with these token counts: settle what can now be settled.

        Returns the request's energy now and whether it is final (else peers still in flight may
        shift it a little, and ``on_settled`` gives the final figure when they end).
        """
        with self._lock:
            t = self._close()
            tracked = self.live[request_id]
            tracked.ended_s, tracked.input_tokens, tracked.output_tokens = t, input_tokens, output_tokens
            self._settle(skip=request_id)
            final = request_id not in self.live
            energy = tracked.energy if final else self._provisional(tracked)
            if self._on_ended is not None:
                self._on_ended(tracked, energy, final)
            return energy, final

    def _provisional(self, tracked: Tracked) -> Measurement:
        energy = tracked.energy
        for interval in self._open:
            if tracked.request_id in interval.members:
                share = split(interval.members, self._guess_weight(tracked))[tracked.request_id]
                energy = energy.plus(interval.energy, share)
        return energy

    def _guess_weight(self, own: Tracked) -> Callable[[str, Phase], int]:
        def weight(rid: str, phase: Phase) -> int:
            t = self.live[rid]
            return t.weight(phase) if t.ended_s is not None else own.weight(phase)
        return weight

    def _weight(self, rid: str, phase: Phase) -> int:
        return self.live[rid].weight(phase)

    def _settle(self, skip: str) -> None:
        """Settle every interval whose requests have all ended; ``skip`` (the one ending now) is
        reported by ``end`` itself, the others that became final by ``on_settled``."""
        still: list[_Interval] = []
        for interval in self._open:
            final = None if any(self.live[r].ended_s is None for r in interval.members) else self._final(interval)
            if final is None:
                still.append(interval)
                continue
            for rid, share in split(interval.members, self._weight).items():
                tracked = self.live[rid]
                tracked.energy = tracked.energy.plus(final, share)
                self.charged = self.charged.plus(final, share)
                tracked.pending -= 1
        self._open = still
        for rid in [r for r, t in self.live.items() if t.ended_s is not None and t.pending == 0]:
            tracked = self.live.pop(rid)
            if rid != skip:
                self._on_settled(tracked)

    def close(self, settle_timeout_s: float = 0.0) -> Reading:
        """The last reading, final (a scraped meter's next sample waited for, at most ``settle_timeout_s``);
        intervals of requests that never ended stay uncharged (they are counted in ``unsettled_j``)."""
        with self._lock:
            self._close()
            self.meter.wait_settled(self._last.timestamp_s, settle_timeout_s)
            self._settle_idle()
            self._settle(skip="")
            self.first, self._last = self.meter.revise(self.first), self.meter.revise(self._last)
            return self._last

    def unsettled_j(self) -> float:
        with self._lock:
            return sum(i.energy.total_j for i in (*self._open, *self._idle_open))
