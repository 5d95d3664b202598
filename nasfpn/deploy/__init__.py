"""Deployment: export, INT8 quantization, the Ascend 310 twin and its .bin result files."""
