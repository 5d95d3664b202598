"""Model files: checkpoint I/O and what a checkpoint or an exported model says about itself."""
