"""`posecal train`: typed training configs, losses, online quality targets, data-parallel training."""
