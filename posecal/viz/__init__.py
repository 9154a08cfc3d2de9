"""Pictures made from numbers: pose overlays, evaluation plots and the self-contained report.html."""
