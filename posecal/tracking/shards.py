"""`posecal track` under torchrun: the ranks' per-video results as one results file, track ids renumbered.

Each rank tracks whole videos (a video's frames must stay in one process: identities are kept from frame to
frame), numbering its tracks from 1 on and on over its videos. One process numbers them video by video in input
order, each video's ids following the previous video's; merged_tracks gives every video's ids that offset, so the
merged file is one process's, entry for entry and in the same order.
"""
from __future__ import annotations


def merged_tracks(shares: list[tuple[list[tuple[int, int, int, int, int]], list[dict], int]]) -> tuple[list[dict], int]:
    """shares: per rank (videos, results, frames), each video (input index, its first track id on that rank, the
    rank's next id after it, its first and end positions in the rank's results). Returns the results of all
    videos in input order with one process's track ids, and the next free id."""
    videos = sorted((video, rank) for rank, (share_videos, _, _) in enumerate(shares) for video in share_videos)
    merged, next_id = [], 1
    for (_, first_id, end_id, start, end), rank in videos:
        shift = next_id - first_id
        for entry in shares[rank][1][start:end]:
            merged.append(entry | {"track_id": entry["track_id"] + shift})
        next_id += end_id - first_id
    return merged, next_id
