"""Work spread over processes, knowing no model: the cores a process may use (cores.py), the parts a run spread
over workers keeps as its units are done (parts.py), and the rows of work Ray Data actors do (ray_rows.py)."""
from posecal.parallel.cores import default_threads, machine_cores

__all__ = ["default_threads", "machine_cores"]
