"""The runner, which drives a backend under a meter, and the run record it produces."""
