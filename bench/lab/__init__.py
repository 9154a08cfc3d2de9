"""Benchmark-only code the benches and their tests share: synthetic tracking scenes (moving_people) and
track scoring against truth (mot, py-motmetrics). Not part of the posecal package: the wheel never ships it."""
