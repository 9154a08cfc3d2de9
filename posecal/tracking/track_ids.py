"""`posecal track --engine ray`: the videos' results, each video tracked on its own, as one results file with the
track ids one process gives.

A video is tracked whole in one place (its frames must stay together: identities are kept from frame to frame),
by a tracker that numbers its tracks from 1. One process numbers them video by video in input order, each video's
ids going on from the previous video's; merged_tracks gives every video's ids that offset, so the merged file is
one process's, entry for entry and in the same order.
"""
from __future__ import annotations


def merged_tracks(videos: list[tuple[int, list[dict], int]]) -> tuple[list[dict], int]:
    """videos: per video (its input index, its results with track ids from 1 on, the next id its tracker would
    hand out), in any order. Returns the results of all videos in input order with one process's track ids, and
    the next free id."""
    merged, next_id = [], 1
    for _, entries, end_id in sorted(videos, key=lambda video: video[0]):
        shift = next_id - 1
        merged += [entry | {"track_id": entry["track_id"] + shift} for entry in entries]
        next_id += end_id - 1
    return merged, next_id
