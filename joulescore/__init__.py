"""joulescore: measure and rate the energy of AI inference."""

__version__ = "0.1.0"
