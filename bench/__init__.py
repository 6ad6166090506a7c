"""Load benchmark of the task API (issue 5): ``make bench`` or ``python -m bench --help``."""
