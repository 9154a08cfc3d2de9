"""Work spread over processes, knowing no model: torchrun's ranks for predict, eval and track (each rank its share, rank 0 writes one result), and the shards a Ray run keeps (shards.py)."""
from posecal.parallel.ranks import (Place, RankFailed, Ranks, current, default_threads, is_main_process, place_from_env,
                                    rank_job, shard_indices)

__all__ = ["Place", "RankFailed", "Ranks", "current", "default_threads", "is_main_process", "place_from_env",
           "rank_job", "shard_indices"]
