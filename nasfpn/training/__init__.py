"""Training: learning-rate schedule, train-step cell, callbacks, distributed set-up."""
