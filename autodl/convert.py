"""Your own data to an AutoDL dataset: a folder of images per class, a CSV of file names and
labels (multi-label), or a folder of videos per class.

    python -m autodl.convert folder ROOT --out DEST          # ROOT/CLASS/*.jpg|png|...
    python -m autodl.convert csv LABELS.csv --images DIR --out DEST   # FileName,Labels
    python -m autodl.convert video ROOT --out DEST [--frames 16]      # needs PyAV

DEST gets NAME.data/, NAME.solution, NAME_label.name and NAME_test_files.txt (the source
file of each test record, in record order, so predictions can be mapped back to files).
User errors print one line naming the file or row and exit with status 2.
"""
import argparse
import collections
import csv
import io
import os
import re
import sys

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import guard
from .writer import write_dataset

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v"}
HUGE_PIXELS = 50_000_000
TEST_FILES_SUFFIX = "_test_files.txt"
_GRAY_MODES = {"1", "L", "I", "I;16", "F"}
_TARGET_MODE = {1: "L", 3: "RGB", 4: "RGBA"}

# We keep huge images on purpose (the model resizes); PIL would refuse them as "bombs".
Image.MAX_IMAGE_PIXELS = None


EVERYTHING = "everything"  # held_out: train on all images, test on them again (no held-out)


class ConvertError(Exception):
    """A problem with the user's data: reported as one line, exit status 2."""


def _warn(message):
    print(message, file=sys.stderr, flush=True)


def _channels(image):
    if image.mode in _GRAY_MODES:
        return 1
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return 4
    return 3


def _probe_image(path):
    """(channels, format) of a readable image, or None after reporting why it is skipped."""
    try:
        if os.path.getsize(path) == 0:
            _warn(f"skipped {path}: empty file")
            return None
        with Image.open(path) as image:
            image.load()  # a truncated file fails here, not later inside the writer
            if image.width * image.height > HUGE_PIXELS:
                _warn(f"note: {path} is {image.width}x{image.height} "
                      f"({image.width * image.height / 1e6:.0f} MP); kept, the model resizes it")
            return _channels(image), image.format
    except OSError as error:  # unreadable, truncated or not an image at all
        _warn(f"skipped {path}: {error}")
        return None


def _to_8_bits(image):
    """16-bit, 32-bit and float images scaled to 0..255 by their range (converting them to L
    would clamp): integers by the 16-bit range (or their maximum when larger), floats by
    [0, 1] when they lie there, else by their own minimum and maximum."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if image.mode == "F":
        if low < 0 or high > 1:
            values = values - low
            high = high - low
        else:
            high = 1.0
    else:
        values = np.maximum(values, 0)
        high = max(high, 65535.0)
    scaled = np.round(values * (255.0 / high)) if high > 0 else np.zeros_like(values)
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")


def _image_bytes(path, channels, fmt, target):
    """The file's own bytes when the model can read them as they are, else a PNG."""
    if fmt in ("JPEG", "PNG") and channels == target:
        with open(path, "rb") as f:
            data = f.read()
        if fmt == "JPEG" or Image.open(io.BytesIO(data)).mode in _TARGET_MODE.values():
            return data
    with Image.open(path) as image:
        image = _to_8_bits(image).convert(_TARGET_MODE[target])
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()


def _target_channels(counts):
    """One channel count for the whole set: the only one, or RGB when they are mixed."""
    return next(iter(counts)) if len(counts) == 1 else 3


def _split(label_lists, test_ratio, seed):
    """Test indices, stratified by label set where a label set has at least 2 examples."""
    rng = np.random.default_rng(seed)
    groups = collections.defaultdict(list)
    for i, labels in enumerate(label_lists):
        groups[tuple(labels)].append(i)
    test, rest = [], []
    for key in sorted(groups):
        members = rng.permutation(groups[key]).tolist()
        if len(members) >= 2:
            k = min(len(members) - 1, max(1, round(test_ratio * len(members))))
            test += members[:k]
            rest += members[k:]
        else:  # rare label sets are drawn below, over the whole leftover pool
            rest += members
    n = len(label_lists)
    want = max(1, round(test_ratio * n))
    if len(test) < want:  # top up so the ratio is about right, never taking the last
        left = collections.Counter(tuple(label_lists[i]) for i in rest)  # of a label set
        for i in rng.permutation(rest).tolist():
            if len(test) >= want:
                break
            if left[tuple(label_lists[i])] > 1:
                left[tuple(label_lists[i])] -= 1
                test.append(i)
    test = sorted(set(test))
    if not test or len(test) == n:
        raise ConvertError(f"cannot split {n} examples into non-empty train and test sets "
                           f"with test_ratio {test_ratio}")
    return test


def _dataset_name(text):
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return name or "dataset"


def _has_line_break(text):
    return "\n" in text or "\r" in text


def _class_folders(root, extensions, kind, min_classes=2):
    if not os.path.isdir(root):
        raise ConvertError(f"{root}: not a folder")
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise ConvertError(f"{root}: no class folders (expected {root}/CLASS/*)")
    for name in classes:
        if _has_line_break(name):
            raise ConvertError(f"{os.path.join(root, name)!r}: a class name with a line break "
                               "cannot be stored (one class name a line); rename the folder")
    files = []
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        found = sorted(f for f in os.listdir(folder)
                       if os.path.splitext(f)[1].lower() in extensions)
        for f in [f for f in found if _has_line_break(f)]:
            _warn(f"skipped {os.path.join(folder, f)!r}: a file name with a line break cannot "
                  "be listed (one name a line)")
            found.remove(f)
        if not found:
            raise ConvertError(f"{folder}: no {kind} files in this class folder")
        files += [(os.path.join(folder, f), [index]) for f in found]
    if len(classes) < min_classes:
        raise ConvertError(f"{root}: only one class ({classes[0]}); a classifier needs two "
                           "or more")
    return classes, files


def _read_csv(csv_path, images):
    if not os.path.isfile(csv_path):
        raise ConvertError(f"{csv_path}: no such file")
    if not os.path.isdir(images):
        raise ConvertError(f"{images}: images folder not found")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            return _parse_csv(csv_path, images, f)
    except UnicodeDecodeError as e:
        raise ConvertError(f"{csv_path}: not UTF-8 text ({e.reason} at byte {e.start}); save "
                           "it as UTF-8") from None
    except csv.Error as e:
        raise ConvertError(f"{csv_path}: not a readable CSV file ({e})") from None


def _parse_csv(csv_path, images, f):
    rows = []
    reader = csv.DictReader(f)
    if not reader.fieldnames or {"FileName", "Labels"} - set(reader.fieldnames):
        raise ConvertError(f"{csv_path}: the header must name the columns FileName,Labels")
    for row in reader:
        line = reader.line_num
        name, labels = (row["FileName"] or "").strip(), (row["Labels"] or "").split()
        if not name:
            raise ConvertError(f"{csv_path} line {line}: empty FileName")
        if _has_line_break(name):
            raise ConvertError(f"{csv_path} line {line}: the FileName {name!r} holds a "
                               "line break")
        if not labels:
            raise ConvertError(f"{csv_path} line {line}: {name} has no labels")
        path = os.path.join(images, name)
        if not os.path.isfile(path):
            raise ConvertError(f"{csv_path} line {line}: {name} not found in {images}")
        rows.append((path, labels, line))
    if not rows:
        raise ConvertError(f"{csv_path}: no rows")
    rows = _merge_duplicates(csv_path, rows)
    classes = sorted({label for _, labels in rows for label in labels})
    if len(classes) < 2:
        raise ConvertError(f"{csv_path}: only one class ({classes[0]}); a classifier needs two "
                           "or more")
    index = {c: i for i, c in enumerate(classes)}
    return classes, [(path, sorted(index[c] for c in labels)) for path, labels in rows]


def _merge_duplicates(csv_path, rows):
    """One row per file: a repeated row is kept once (a note), and labels that disagree are
    merged in a multi-label CSV and refused in a single-label one (a file in both splits
    would leak test images into training)."""
    multi_label = any(len(set(labels)) > 1 for _, labels, _ in rows)
    first, merged = {}, {}
    for path, labels, line in rows:
        key = os.path.normcase(os.path.realpath(path))
        if key not in first:
            first[key] = line
            merged[key] = (path, list(dict.fromkeys(labels)))
            continue
        kept = merged[key][1]
        if set(labels) <= set(kept):
            _warn(f"note: {csv_path} line {line} repeats {os.path.basename(path)} of line "
                  f"{first[key]}; kept once")
        elif multi_label:
            kept += [label for label in labels if label not in kept]
            _warn(f"note: {csv_path} line {line} gives {os.path.basename(path)} of line "
                  f"{first[key]} more labels; merged into {' '.join(kept)}")
        else:
            raise ConvertError(f"{csv_path} lines {first[key]} and {line}: "
                               f"{os.path.basename(path)} has two labels ({' '.join(kept)} "
                               f"and {' '.join(labels)}); a single-label CSV needs one")
    return list(merged.values())


def check_destination(out, sources, allow_inside=False):
    """--out is replaced as a whole: it must not be or hold what is converted, nor lie inside
    a class folder tree (it would be read as one more class next time)."""
    guard.refuse_overlap("--out", out, sources, ConvertError, allow_inside=allow_inside)


def _write(files, classes, payload, out, name, test_ratio, seed, image_format, overwrite,
           relative_to, held_out=None, progress=True, held_out_first=False):
    """Split, write the dataset (atomically) and the list of test files beside it.
    held_out: None (split by test_ratio), a set of paths (the test split, the rest trains) or
    EVERYTHING (train on all; the test split repeats the training images). held_out_first
    (with a set): the held-out images also open the training split, as its first records,
    for a model told to hold those out itself (configs/image.yaml data.holdout_first)."""
    label_lists = [labels for _, labels in files]
    if len({label for labels in label_lists for label in labels}) < 2:
        raise ConvertError("after skipping unreadable files fewer than two classes are left")
    if held_out is EVERYTHING:
        train = test = list(range(len(files)))
    elif held_out is not None:
        test = [i for i, (path, _) in enumerate(files) if path in held_out]
        train = [i for i, (path, _) in enumerate(files) if path not in held_out]
        if not test or not train:
            raise ConvertError("no readable images left in the "
                               + ("validation" if not test else "training") + " folder")
        if held_out_first:
            train = test + train
    else:
        test = _split(label_lists, test_ratio, seed)
        test_set = set(test)
        train = [i for i in range(len(files)) if i not in test_set]

    def xs(indices):  # lazy: videos are decoded one at a time while writing
        return (payload(i) for i in indices)

    if os.path.exists(out) and not overwrite:
        raise ConvertError(f"{out}: already exists (pass --overwrite to replace it)")
    write_dataset(out, name, train=(xs(train), [label_lists[i] for i in train]),
                  test=(xs(test), [label_lists[i] for i in test]), output_dim=len(classes),
                  image_format=image_format, label_names=classes, overwrite=overwrite,
                  progress=progress)
    # Written after the atomic rename; a missing list only loses file names in fit's CSV.
    with open(os.path.join(out, name + TEST_FILES_SUFFIX), "w") as f:
        f.write("".join(os.path.relpath(files[i][0], relative_to) + "\n" for i in test))
    first = f" (the first {len(test)} held out)" if held_out_first else ""
    print(f"wrote {out}: {len(train)} train{first}, {len(test)} test, {len(classes)} classes",
          file=sys.stderr)
    return out


def convert_images(files, classes, out, name, test_ratio=0.2, seed=0, overwrite=False,
                   relative_to=".", held_out=None, progress=True, held_out_first=False):
    """files: [(path, [class indices])]; unreadable files are reported and skipped."""
    kept, probes = [], []
    for path, labels in tqdm(files, desc="checking images", unit="img", file=sys.stderr,
                             disable=not progress):
        probe = _probe_image(path)
        if probe is not None:
            kept.append((path, labels))
            probes.append(probe)
    if not kept:
        raise ConvertError("no readable images")
    counts = collections.Counter(c for c, _ in probes)
    target = _target_channels(counts)
    if len(counts) > 1:
        _warn(f"note: images mix channel counts {dict(sorted(counts.items()))}; "
              f"all converted to {_TARGET_MODE[target]}")

    def payload(i):
        return _image_bytes(kept[i][0], probes[i][0], probes[i][1], target)

    return _write(kept, classes, payload, out, name, test_ratio, seed, "png", overwrite,
                  relative_to, held_out, progress, held_out_first)


def convert_folder(root, out, name=None, test_ratio=0.2, seed=0, overwrite=False,
                   held_out=None, progress=True):
    check_destination(out, [("source folder", root)])
    classes, files = _class_folders(root, IMAGE_EXTENSIONS, "image")
    name = name or _dataset_name(os.path.basename(os.path.abspath(root)))
    return convert_images(files, classes, out, name, test_ratio, seed, overwrite, root,
                          held_out, progress)


def convert_folders(root, valid, out, name=None, overwrite=False, progress=True,
                    valid_first=False):
    """Train on the class folders of `root`, test on those of `valid` (the same class names;
    a class may be missing from `valid`). valid_first: the training split opens with the
    `valid` images too (fit --valid: the model holds them out to choose its model on)."""
    check_destination(out, [("source folder", root), ("validation folder", valid)])
    classes, files = _class_folders(root, IMAGE_EXTENSIONS, "image")
    valid_classes, valid_files = _class_folders(valid, IMAGE_EXTENSIONS, "image", min_classes=1)
    unknown = sorted(set(valid_classes) - set(classes))
    if unknown:
        raise ConvertError(f"{os.path.join(valid, unknown[0])}: class not in the training "
                           f"folder {root} (its classes: {', '.join(classes)})")
    index = {c: classes.index(c) for c in valid_classes}
    held = [(path, [index[valid_classes[labels[0]]]]) for path, labels in valid_files]
    name = name or _dataset_name(os.path.basename(os.path.abspath(root)))
    try:
        return convert_images(files + held, classes, out, name, overwrite=overwrite,
                              relative_to=valid, held_out={p for p, _ in held},
                              progress=progress, held_out_first=valid_first)
    except ConvertError as e:
        folder = valid if "validation" in str(e) else root
        raise ConvertError(f"{folder}: {e}") from None


def convert_csv(csv_path, images, out, name=None, test_ratio=0.2, seed=0, overwrite=False):
    check_destination(out, [("images folder", images), ("CSV file", csv_path)],
                      allow_inside=True)
    classes, files = _read_csv(csv_path, images)
    name = name or _dataset_name(os.path.splitext(os.path.basename(csv_path))[0])
    return convert_images(files, classes, out, name, test_ratio, seed, overwrite, images)


def _import_av():
    try:
        import av
    except ImportError:
        raise ConvertError("video conversion needs PyAV: pip install av "
                           "(see requirements.txt)") from None
    return av


def _video_frames(av, path, frames):
    """Up to `frames` evenly spaced RGB frames, uint8 [T, H, W, 3]."""
    with av.open(path) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not decoded:
        raise ValueError("no video frames")
    index = np.linspace(0, len(decoded) - 1, min(frames, len(decoded))).round().astype(int)
    return np.stack([decoded[i] for i in index])


def convert_video(root, out, name=None, frames=16, test_ratio=0.2, seed=0, overwrite=False):
    check_destination(out, [("source folder", root)])
    av = _import_av()
    classes, files = _class_folders(root, VIDEO_EXTENSIONS, "video")
    kept = []
    for path, labels in tqdm(files, desc="checking videos", unit="video", file=sys.stderr):
        try:
            if os.path.getsize(path) == 0:
                raise ValueError("empty file")
            with av.open(path) as container:
                if not container.streams.video:
                    raise ValueError("no video stream")
            kept.append((path, labels))
        except (OSError, ValueError, av.FFmpegError) as error:
            _warn(f"skipped {path}: {error}")
    if not kept:
        raise ConvertError("no readable videos")

    def payload(i):
        try:
            return _video_frames(av, kept[i][0], frames)
        except (OSError, ValueError, av.FFmpegError) as error:
            # Past the check, yet undecodable: stop (the writer leaves nothing behind).
            raise ConvertError(f"{kept[i][0]}: cannot decode ({error})") from None

    name = name or _dataset_name(os.path.basename(os.path.abspath(root)))
    return _write(kept, classes, payload, out, name, test_ratio, seed, "jpeg", overwrite, root)


def add_arguments(sub):
    """The convert subcommands (shared with `python -m autodl convert` and
    `python -m autoclint convert`)."""
    def common(p):
        p.add_argument("--out", required=True, help="dataset folder to create")
        p.add_argument("--name", help="dataset name (default: from the input's name)")
        p.add_argument("--test_ratio", type=float, default=0.2,
                       help="share of each class held out as the test split")
        p.add_argument("--seed", type=int, default=0, help="seed of the test split")
        p.add_argument("--overwrite", action="store_true",
                       help="replace an earlier dataset at --out")

    defaults = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("folder", help="ROOT/CLASS/*.jpg|png|...", formatter_class=defaults)
    p.add_argument("root", help="a folder per class")
    common(p)
    p = sub.add_parser("csv", help="CSV with FileName,Labels (space-separated, multi-label)",
                       formatter_class=defaults)
    p.add_argument("csv", help="the labels file")
    p.add_argument("--images", help="folder the file names are relative to "
                                    "(default: the CSV's folder)")
    common(p)
    p = sub.add_parser("video", help="ROOT/CLASS/*.mp4|avi|... (needs PyAV)",
                       formatter_class=defaults)
    p.add_argument("root", help="a folder per class")
    p.add_argument("--frames", type=int, default=16, help="frames kept per video")
    common(p)


def run_args(args):
    kw = {"name": args.name, "test_ratio": args.test_ratio, "seed": args.seed,
          "overwrite": args.overwrite}
    if not 0 < args.test_ratio < 1:
        raise ConvertError(f"--test_ratio must be between 0 and 1, got {args.test_ratio}")
    if args.kind == "folder":
        return convert_folder(args.root, args.out, **kw)
    if args.kind == "csv":
        images = args.images or os.path.dirname(os.path.abspath(args.csv))
        return convert_csv(args.csv, images, args.out, **kw)
    return convert_video(args.root, args.out, frames=args.frames, **kw)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autodl.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    add_arguments(sub)
    args = parser.parse_args(argv)
    try:
        run_args(args)
    except ConvertError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
