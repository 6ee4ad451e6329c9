"""Pure types, no I/O: the run record (and the settings a run is made from)."""
