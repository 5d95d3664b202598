"""The bottom layer: the error policy, atomic writes, the user's files and output folders, the MindSpore context."""
