"""Training: data, losses, checkpoints and the training loop. Inference never imports this."""
