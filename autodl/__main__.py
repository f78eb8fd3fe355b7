"""The AutoDL harness's own commands (it runs any submission and never imports ours).

    python -m autodl run -dataset_dir=DIR [-code_dir=DIR|ZIP] [-time_budget=S] ...
                                            (= python autodl/run_local_test.py; autodl-run)
    python -m autodl convert folder|csv|video ...     your data to an AutoDL dataset
    python -m autodl.datasets list|build ...          the offline dataset builders
    python -m autodl.bench ...                        the benchmark

Our classifier's tool (fit, predict, zip) is `python -m autoclint` (or `autoclint`).
"""
import sys

MOVED = ("fit", "predict", "zip")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    if command == "run":
        from . import run_local_test
        return run_local_test.main(argv[1:])
    if command == "convert":
        from . import convert
        return convert.main(argv[1:])
    if command in MOVED:
        print(f"error: `{command}` is our classifier's command, not the harness's: "
              f"python -m autoclint {command} ... (or `autoclint {command}`)", file=sys.stderr)
        return 2
    if command in ("-h", "--help"):
        print(__doc__)
        return 0
    print(f"error: unknown command {command!r}; commands: run, convert "
          f"(python -m autodl --help)" if command else
          "error: give a command: run, convert (python -m autodl --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
