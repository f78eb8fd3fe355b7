"""autoclint: our classifier on your own data.

    python -m autoclint fit --data FOLDER|CSV|AUTODL_DIR [--valid FOLDER] --time_budget 60
    python -m autoclint predict --model OUT --data FOLDER_OR_FILES --out preds.csv
    python -m autoclint evaluate --model OUT --data LABELLED_FOLDER [--out FOLDER]
    python -m autoclint zip --out submission.zip
    python -m autoclint convert folder|csv|video ...   (the harness's converter, autodl.convert)

fit writes OUT/model.pt, OUT/report.md (what was trained, held-out top-1 accuracy per
class, why it ended), OUT/predictions.csv (held-out files, top class, per-class
probabilities), OUT/learning-curve.png, OUT/run.json (and OUT/dataset/ with --keep-dataset).
Installed, the command is `autoclint`; from Python: `from autoclint import fit, load`.
"""
import argparse
import os
import sys

from autodl import convert, flags, layout

from . import api, app, metrics, pack

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
    p.add_argument("--valid", metavar="FOLDER",
                   help="your own held-out folder of class folders (FOLDER/CLASS/*.jpg): "
                        "the model is chosen on it (never trained on it) and scored on it, "
                        "instead of a --test_ratio share of --data")
    p.add_argument("--out",
                   help="output folder (created; a fit there replaces only what an earlier "
                        "fit wrote, and one that holds anything else is refused); default: "
                        "a new folder DATA-fit-DATE-TIME here")
    p.add_argument("--overwrite", action="store_true",
                   help="use an --out that holds other files too; they are left alone, and a "
                        "file or folder named like fit's outputs that fit did not write is "
                        "still refused")
    p.add_argument("--test_ratio", type=float, default=0.2,
                   help="share of each class held out and scored (without --valid); 0 "
                        "trains on everything and gives no held-out score")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--keep-dataset", "--keep_dataset", dest="keep_dataset",
                   action="store_true",
                   help="keep the converted copy of the data in OUT/dataset (by default it "
                        "lives in a temporary folder and is deleted after the fit)")
    p.add_argument("--quiet", action="store_true", help="no progress bars at all")
    _add_settings(p)
    p = sub.add_parser("predict", formatter_class=DEFAULTS,
                       help="predict images with a saved model",
                       description="Predict images (folders searched recursively, or files) "
                                   "with a model saved by fit; writes a CSV (file, top class, "
                                   "probabilities).")
    p.add_argument("--model", required=True, help="fit's --out folder, or its model.pt")
    p.add_argument("--data", "--images", dest="data", required=True, nargs="+",
                   metavar="FOLDER_OR_FILE",
                   help="folders of images and/or image files; --images is the old name")
    p.add_argument("--out", required=True, help="CSV to write")
    _add_settings(p)
    p = sub.add_parser("evaluate", formatter_class=DEFAULTS,
                       help="score a saved model on a labelled folder",
                       description="Score a model saved by fit on FOLDER/CLASS/*.jpg: top-1 "
                                   "accuracy, balanced accuracy, per-class precision and "
                                   "recall, confusion matrix, and the challenge's AUC/NAUC.")
    p.add_argument("--model", required=True, help="fit's --out folder, or its model.pt")
    p.add_argument("--data", required=True, help="labelled folder: FOLDER/CLASS/*.jpg")
    p.add_argument("--out", help="folder to write confusion.png, evaluation.json and "
                                 "predictions.csv to (created)")
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


def fit(args):
    model = api.fit(args.data, args.time_budget, args.out, args.valid, images=args.images,
                    test_ratio=args.test_ratio, seed=args.seed, overwrite=args.overwrite,
                    keep_dataset=args.keep_dataset, quiet=args.quiet, verbose=args.verbose,
                    config=args.config)
    return model.fit_result["status"]


def predict(args):
    out_folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_folder):
        raise app.UserError(f"{args.out}: the folder {out_folder} does not exist")
    if os.path.isdir(args.out):
        raise app.UserError(f"{args.out}: is a folder; give a CSV file name")
    data = args.data[0] if len(args.data) == 1 else args.data
    predictions = api.load(args.model).predict(data)
    predictions.to_csv(args.out)
    print(f"wrote {args.out}: {len(predictions.files)} images", file=sys.stderr)
    return 0


def evaluate(args):
    model = api.load(args.model)
    result = model.evaluate(args.data, out=args.out)
    print(metrics.format_scores(result, args.data))
    if args.out:
        print(f"wrote {args.out}/: confusion.png, evaluation.json, predictions.csv",
              file=sys.stderr)
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    commands = {"fit": fit, "predict": predict, "evaluate": evaluate, "zip": make_zip,
                "convert": lambda a: convert.run_args(a) and 0}
    try:
        if args.command in ("fit", "predict", "evaluate"):
            flags.apply_submission_settings(args.config, args.verbose)
            if args.verbose and args.command != "fit":  # the model runs in this process
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
