"""`python -m nasfpn <command> ...`: the `nasfpn` command (nasfpn/cli.py) without installing."""

from nasfpn.cli import main

if __name__ == "__main__":
    main()
