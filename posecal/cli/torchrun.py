"""posecal launched by torchrun: only `posecal train` shares its work over torchrun's ranks (DDP,
posecal/training/distributed.py). Inference scales through Ray instead (`posecal predict|track|eval|audit --engine
ray`, docs/scale.md): the torchrun sharding of predict, track and eval is retired, so N copies of any other command
would each do all of its work and write the same files. Such a launch is refused before any work, in one line.

Rank 0 says it and exits 2; the other ranks exit 0 without a word. Why not 2 everywhere: torchrun stops every rank
as soon as one exits with an error, which could cut rank 0 off before it spoke; torchrun still reports the launch
failed, by rank 0's status.
"""
from __future__ import annotations

import os

RAY_COMMANDS = ("predict", "track", "eval", "audit")   # the commands with --engine ray


def torchrun_place(environ=None) -> tuple[int, int]:
    """(rank, world size) from torchrun's environment: (0, 1) outside it, or where its values are not numbers."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def torchrun_refusal(command: str, environ=None) -> tuple[str | None, bool]:
    """The one line refusing `command` under torchrun with several ranks (None: it may run), and whether this
    process says it (rank 0)."""
    rank, world = torchrun_place(environ)
    if world <= 1 or command == "train":
        return None, False
    if command in RAY_COMMANDS:
        line = (f"posecal {command} no longer shares its work over torchrun's ranks: run it once with --engine ray "
                f"(a local Ray on this machine's cores, or --address for a cluster); torchrun is for posecal train")
    else:
        line = f"posecal {command} runs as one process, not under torchrun (torchrun is for posecal train)"
    return line, rank == 0
