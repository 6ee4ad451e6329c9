"""``joulescore proxy``: a metering reverse proxy for OpenAI-compatible servers (energy per request)."""
