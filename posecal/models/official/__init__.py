"""Published pose-network checkpoints (HRNet reference repo, mmpose, princeton-vl hourglass) into posecal models."""
