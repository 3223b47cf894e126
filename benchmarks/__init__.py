"""``make bench``: speed of the hot paths against references measured in the same run."""
