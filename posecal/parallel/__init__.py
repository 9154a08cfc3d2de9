"""Work spread over processes, knowing no model: the cores a process may use (cores.py), the one runner of the
commands that work unit by unit with its engines (runner.py; Ray's executor in ray_rows.py) and the parts a run
keeps as its units are done (parts.py)."""
from posecal.parallel.cores import default_threads, machine_cores

__all__ = ["default_threads", "machine_cores"]
