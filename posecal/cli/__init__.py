"""The command line: argument parsing and each command's glue to its job, nothing else."""
