"""`python -m posecal ARGS` = `posecal ARGS`; what `torchrun --nproc_per_node N -m posecal train CONFIG` runs."""
import sys

from posecal.cli.main import main

sys.exit(main())
