"""Ranks for the inference jobs: `torchrun ... -m posecal predict|track|eval` shards the inputs over the ranks.

torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT) tells a copy of posecal
that it is one rank of a group; without it (or with one rank) a job is one process and no process group is made.
A job decorated with `rank_job` then runs on every rank: each rank takes its share of the inputs
(`Ranks.shard_indices`: item i goes to rank i % world, a stable order, every item exactly once), `Ranks.gather`
brings the shares' picklable results to rank 0, rank 0 alone merges them and writes the output files (atomically,
posecal.io), and the job's end is a barrier: every rank returns once rank 0 has written.

Errors never leave a rank waiting: each `gather`, and the job's end, first exchanges every rank's status. A rank
that fails (a bad input, a bug) takes part in the next exchange with its error instead of its result, so every
rank learns of it at the same point and stops: rank 0 prints the one message (`posecal: error: ...`), the others
exit quietly, all of them with RankFailed (exit status 2). A failure that is not a PosecalInputError (a bug)
prints its traceback on its own rank first.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Sequence

from posecal.errors import PosecalInputError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# A gather waits for the slowest rank's whole share (and rank 0's merge and writes for the final barrier); gloo's
# and NCCL's default timeouts (30 / 10 minutes) would end a long but healthy run.
TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Place:
    """Where this process stands, read from torchrun's environment; no process group is needed to know it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def place_from_env(environ=None) -> Place:
    """torchrun's RANK, WORLD_SIZE, LOCAL_RANK (and LOCAL_WORLD_SIZE); none of them set: one process."""
    env = os.environ if environ is None else environ
    if not any(k in env for k in TORCHRUN_ENV):
        return Place()
    missing = [k for k in TORCHRUN_ENV if k not in env]
    if missing:
        raise PosecalInputError(f"torchrun's environment is incomplete: {', '.join(missing)} not set (start the "
                                "ranks with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK)")
    values = {}
    for key in (*TORCHRUN_ENV, "LOCAL_WORLD_SIZE"):
        text = env.get(key)
        if text is None:
            continue
        try:
            values[key] = int(text)
        except ValueError:
            raise PosecalInputError(f"{key}={text!r}: torchrun sets it to a whole number") from None
    world = values["WORLD_SIZE"]
    local_world = values.get("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= values["RANK"] < world or not 0 <= values["LOCAL_RANK"] < max(local_world, 1):
        raise PosecalInputError(f"RANK={values['RANK']}, LOCAL_RANK={values['LOCAL_RANK']}, WORLD_SIZE={world}: "
                                "not a rank of the group (torchrun sets 0 <= RANK < WORLD_SIZE)")
    return Place(values["RANK"], world, values["LOCAL_RANK"], max(local_world, 1))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints summaries."""
    try:
        return place_from_env().is_main
    except PosecalInputError:
        return True


def machine_cores() -> int:
    """The CPU cores this process may use (its affinity on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def default_threads(place: Place | None = None) -> int:
    """CPU threads per rank when none are asked for: the machine's cores for one process (a 16-core machine is
    not left idle); under torchrun the node's cores shared among the node's ranks, at least 1 each."""
    place = place or place_from_env()
    return max(1, machine_cores() // place.local_world_size)


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The indices of n items that are rank's share: i % world_size == rank. Every item is in exactly one share,
    the shares differ in size by at most one, and neighbours in the input (often alike in cost: a folder of one
    camera's photos, sorted) are spread over the ranks."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of {world_size}")
    return list(range(rank, n, world_size))


class RankFailed(PosecalInputError):
    """A rank failed and every rank stops. `speak`: this rank is to print the message (false where it was printed
    already, by rank 0, or where another rank prints it)."""

    def __init__(self, message: str, speak: bool):
        super().__init__(message)
        self.speak = speak


class Ranks:
    """This process's rank in a job, and the job's collectives. One process: rank 0 of 1, collectives are no-ops."""

    def __init__(self, place: Place | None = None, backend: str | None = None):
        self.place = place or Place()
        self.backend = backend          # None: no process group (one process)
        self._owns_group = False

    rank = property(lambda self: self.place.rank)
    world_size = property(lambda self: self.place.world_size)
    local_rank = property(lambda self: self.place.local_rank)
    is_main = property(lambda self: self.place.is_main)
    distributed = property(lambda self: self.backend is not None)

    @classmethod
    def start(cls, place: Place, device: str = "cpu") -> "Ranks":
        """Join torchrun's group: NCCL when the job runs on GPUs (this rank's: cuda:LOCAL_RANK becomes the current
        device, so 'cuda' means it), gloo otherwise."""
        import torch
        import torch.distributed as dist

        backend = "gloo"
        if str(device).startswith("cuda") and torch.cuda.is_available():
            count = torch.cuda.device_count()
            if place.local_rank >= count:
                raise PosecalInputError(f"rank {place.rank} has LOCAL_RANK {place.local_rank}, but this machine has "
                                        f"{count} GPU(s): start at most {count} processes per node "
                                        f"(--nproc-per-node) with --device cuda")
            torch.cuda.set_device(place.local_rank)
            backend = "nccl"
        ranks = cls(place, backend)
        if not dist.is_initialized():
            try:
                dist.init_process_group(backend, timeout=TIMEOUT)
            except ValueError as e:   # e.g. MASTER_ADDR missing: not started by torchrun
                raise PosecalInputError(f"cannot join the ranks' process group ({e}); start posecal with "
                                        "torchrun") from None
            ranks._owns_group = True
        return ranks

    def shard_indices(self, n: int) -> list[int]:
        return shard_indices(n, self.rank, self.world_size)

    def shard(self, items: Sequence) -> list:
        return [items[i] for i in self.shard_indices(len(items))]

    def main_only(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """`log` on rank 0, nothing elsewhere: for lines every rank would print alike (set-up, summaries)."""
        return log if self.is_main else (lambda message: None)

    def _exchange(self, status: tuple) -> list[tuple]:
        if not self.distributed:
            return [status]
        import torch.distributed as dist

        statuses: list = [None] * self.world_size
        dist.all_gather_object(statuses, status)
        return statuses

    def agree(self, failure: str | None = None) -> None:
        """Every rank's status, exchanged (a barrier): any failure, this rank's or another's, raises RankFailed on
        every rank. Rank 0 prints its one line first, and no rank leaves before it has: torchrun stops every
        rank as soon as one exits with an error, which could cut rank 0 off before it spoke."""
        statuses = self._exchange(("ok",) if failure is None else ("failed", failure))
        failed = [(r, s[1]) for r, s in enumerate(statuses) if s[0] != "ok"]
        if not failed:
            return
        rank, message = failed[0]
        if len({m for _, m in failed}) > 1 or len(failed) < self.world_size:
            message = f"{message} (rank {rank} of {self.world_size}; every rank stopped)"
        if self.is_main:
            print(f"posecal: error: {message}", file=sys.stderr, flush=True)
        self._exchange(("said",))
        raise RankFailed(message, speak=False)

    def gather(self, value) -> list | None:
        """Every rank's `value` (picklable), on rank 0 as a list in rank order; None on the others. Agrees on
        the ranks' statuses first, so it raises RankFailed everywhere if a rank failed."""
        self.agree()
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def close(self) -> None:
        if self._owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._owns_group = False


_SINGLE = Ranks()
_active: Ranks | None = None


def current() -> Ranks:
    """The ranks of the job running now (inside `rank_job`), else one process."""
    return _active or _SINGLE


def rank_job(device_of: Callable[..., str] | None = None):
    """Run a job function on every rank of torchrun's group (or as one process without torchrun or with one
    rank). Inside it, `current()` is this rank. device_of(*args, **kwargs): the device the job was asked to run
    on ('cpu' / 'cuda'), which picks the group's backend. The job's end is a barrier at which every rank learns of
    a failure anywhere (see the module's docstring)."""

    def wrap(job):
        @functools.wraps(job)
        def run(*args, **kwargs):
            global _active
            place = place_from_env()
            if _active is not None or place.world_size == 1:
                return job(*args, **kwargs)
            ranks = Ranks.start(place, device_of(*args, **kwargs) if device_of else "cpu")
            _active = ranks
            try:
                try:
                    result = job(*args, **kwargs)
                except RankFailed:
                    raise                                         # every rank knows already
                except PosecalInputError as e:
                    ranks.agree(str(e))
                    raise
                except Exception as e:
                    # a bug: its traceback here, on this rank, before rank 0 may exit (torchrun then stops the
                    # rest); the others hear one line of it
                    traceback.print_exc()
                    sys.stderr.flush()
                    ranks.agree(f"{type(e).__name__}: {e}")
                ranks.agree()                                      # the end: rank 0 has written
                return result
            finally:
                _active = None
                ranks.close()
        return run
    return wrap
