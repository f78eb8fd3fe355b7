"""autoclint: our classifier on your own data.

    python -m autoclint fit --data FOLDER|CSV|AUTODL_DIR --time_budget 60 --out OUT
    python -m autoclint predict --model OUT/model.pt --data FOLDER --out preds.csv
    python -m autoclint zip --out submission.zip
    python -m autoclint convert folder|csv|video ...   (the harness's converter, autodl.convert)

fit writes OUT/dataset/ (when it converted), OUT/learning-curve.png, OUT/predictions.csv
(test files, top class, per-class probabilities), OUT/model.pt and OUT/run.json.
Installed (pip install -e .), the command is `autoclint`.
"""
import argparse
import sys

from autodl import convert, flags, layout

from . import app, pack

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def _add_settings(p):
    p.add_argument("--config", metavar="FILE_OR_JSON",
                   help="overrides of configs/*.yaml: a JSON object or a JSON/YAML file "
                        f"(sets {flags.CONFIG_ENV}; without it, that variable applies)")
    p.add_argument("--verbose", action="store_true",
                   help=f"one log line per decision of the model (sets {flags.VERBOSE_ENV}=1)")


def parser():
    top = argparse.ArgumentParser(prog="python -m autoclint", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("fit", formatter_class=DEFAULTS,
                       help="convert if needed, train under a budget, save predictions and "
                            "the model",
                       description="Convert your data if needed, run our model on it through "
                                   "the local runner, and keep its predictions and model.")
    p.add_argument("--data", required=True,
                   help="image folder per class (ROOT/CLASS/*.jpg), CSV FileName,Labels, "
                        "video folder per class or AutoDL dataset folder")
    p.add_argument("--images", help="for a CSV: the folder its file names are relative to "
                                    "(default: the CSV's folder)")
    p.add_argument("--time_budget", type=float, default=60, help="seconds")
    p.add_argument("--out", required=True,
                   help="output folder (created; a fit there replaces only what an earlier "
                        "fit wrote, and one that holds anything else is refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="use an --out that holds other files too; they are left alone, and a "
                        "file or folder named like fit's outputs that fit did not write is "
                        "still refused")
    p.add_argument("--test_ratio", type=float, default=0.2,
                   help="share of each class held out as the test split when converting")
    p.add_argument("--seed", type=int, default=0, help="seed of the test split")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_settings(p)
    p = sub.add_parser("predict", formatter_class=DEFAULTS,
                       help="predict a folder of images with a saved model",
                       description="Predict every image under a folder with a model saved "
                                   "by fit; writes a CSV (file, top class, probabilities).")
    p.add_argument("--model", required=True, help="a model.pt written by fit")
    p.add_argument("--data", "--images", dest="data", required=True,
                   help="folder of images (searched recursively); --images is the old name")
    p.add_argument("--out", required=True, help="CSV to write")
    _add_settings(p)
    p = sub.add_parser("convert", help="your data to an AutoDL dataset (autodl.convert)",
                       description="Your data to an AutoDL dataset.")
    convert.add_arguments(p.add_subparsers(dest="kind", required=True))
    p = sub.add_parser("zip", formatter_class=DEFAULTS, help="build the submission zip",
                       description="Build the submission zip: model.py, skeleton/, configs/ "
                                   "and weight files in models/.")
    p.add_argument("--out", default="submission.zip", help="zip file to write")
    return top


def make_zip(args):
    out, count, size = pack.build_zip(args.out)
    print(f"wrote {out}: {count} files, {size / 2 ** 20:.1f} MB", file=sys.stderr)
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    commands = {"fit": app.fit, "predict": app.predict, "zip": make_zip,
                "convert": lambda a: convert.run_args(a) and 0}
    try:
        if args.command in ("fit", "predict"):
            flags.apply_submission_settings(args.config, args.verbose)
            if args.verbose and args.command == "predict":  # the model runs in this process
                import logging
                logging.basicConfig(level=logging.INFO, format="[model] %(message)s")
        return commands[args.command](args)
    except (convert.ConvertError, layout.DatasetError, flags.FlagError, app.UserError,
            pack.PackError) as error:
        message = " ".join(str(error).split("\n"))
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
