"""Sub-commands of `rsgan`; each module has `add_parser(subparsers)` and `run(args)`."""
