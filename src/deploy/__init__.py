"""Deployment: export, runtimes (MindSpore cell, MINDIR, ONNX Runtime), published-checkpoint download."""
