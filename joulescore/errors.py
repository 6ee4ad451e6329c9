"""Errors a user can fix.  The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class JoulescoreError(Exception):
    """Base class for every error joulescore reports to a user."""

    exit_code = 2


class BadInput(JoulescoreError):
    """Something the user gave (a path, a name, a flag) cannot be used."""


class ModelError(BadInput):
    """A model cannot be found or loaded."""


class DatasetError(BadInput):
    """A prompt set is missing or malformed."""


class StoreError(BadInput):
    """The results database cannot be opened or does not hold what was asked for."""


class MeterUnavailable(JoulescoreError):
    """An energy source cannot measure here (no driver, no permission, no device); the message says why.

    Not a BadInput: the user gave nothing wrong, the machine lacks the source.  ``select_meter``
    turns it into a BadInput when the user asked for that source by name.
    """
