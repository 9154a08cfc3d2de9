"""Ranks under torchrun for the inference jobs (predict, eval, track): each rank its share, rank 0 writes one result; knows no model."""
from posecal.parallel.ranks import (Place, RankFailed, Ranks, current, default_threads, is_main_process, place_from_env,
                                    rank_job, shard_indices)

__all__ = ["Place", "RankFailed", "Ranks", "current", "default_threads", "is_main_process", "place_from_env",
           "rank_job", "shard_indices"]
