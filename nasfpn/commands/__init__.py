"""The entry points' work, one module per command: `run(cfg)` (and `exit_status(result)` where the
exit status says more than 0), with the module docstring as its --help text.

`nasfpn <command>` (nasfpn/cli.py) and the release's root scripts (train.py, eval.py, export.py,
infer.py, create_data.py, postprocess.py, infer_310_twin.py: thin shims) run the same functions.
"""
