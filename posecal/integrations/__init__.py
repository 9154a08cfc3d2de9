"""posecal's results in the tools users already run: supervision, FiftyOne and rerun, and other estimators'
outputs turned into posecal's results format. Each module imports its library only when called (the extras
`posecal[supervision]`, `[fiftyone]`, `[rerun]`), and reads posecal's results as plain arrays, so it knows no
network or pipeline."""
