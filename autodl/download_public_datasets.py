"""Download the public AutoDL datasets into autodl/AutoDL_public_data/NAME/.

    python autodl/download_public_datasets.py [--names Munster Chucky ...] [--out DIR]

Each dataset comes as NAME.data.zip and NAME.solution.zip; both are fetched and unpacked into
a hidden staging folder beside the target, and only a complete DATASET_DIR (NAME.data/ with
train/ and test/, plus NAME.solution) is renamed into place. Datasets already complete are
skipped, and nothing half-written is ever left behind. Standard library plus tqdm only.
"""
import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile

# name -> (data zip URL, solution zip URL). Fix a URL here and nowhere else.
# These follow the layout of a public storage-bucket mirror (storage.googleapis.com/
# public-datasets-autodl/NAME.data.zip and NAME.solution.zip). The 2019 starting kit itself
# linked each zip to its own UUID under https://autodl.lri.fr/my/datasets/download/; neither
# location could be checked from an offline machine, so replace them if a download 404s.
URLS = {
    "Munster": ("https://storage.googleapis.com/public-datasets-autodl/Munster.data.zip",
                "https://storage.googleapis.com/public-datasets-autodl/Munster.solution.zip"),
    "Chucky": ("https://storage.googleapis.com/public-datasets-autodl/Chucky.data.zip",
               "https://storage.googleapis.com/public-datasets-autodl/Chucky.solution.zip"),
    "Pedro": ("https://storage.googleapis.com/public-datasets-autodl/Pedro.data.zip",
              "https://storage.googleapis.com/public-datasets-autodl/Pedro.solution.zip"),
    "Decal": ("https://storage.googleapis.com/public-datasets-autodl/Decal.data.zip",
              "https://storage.googleapis.com/public-datasets-autodl/Decal.solution.zip"),
    "Hammer": ("https://storage.googleapis.com/public-datasets-autodl/Hammer.data.zip",
               "https://storage.googleapis.com/public-datasets-autodl/Hammer.solution.zip"),
    "Kreatur": ("https://storage.googleapis.com/public-datasets-autodl/Kreatur.data.zip",
                "https://storage.googleapis.com/public-datasets-autodl/Kreatur.solution.zip"),
    "Katze": ("https://storage.googleapis.com/public-datasets-autodl/Katze.data.zip",
              "https://storage.googleapis.com/public-datasets-autodl/Katze.solution.zip"),
    "Kraut": ("https://storage.googleapis.com/public-datasets-autodl/Kraut.data.zip",
              "https://storage.googleapis.com/public-datasets-autodl/Kraut.solution.zip"),
}
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "AutoDL_public_data")
CONNECT_TIMEOUT = 3.0   # seconds for the up-front reachability check
READ_TIMEOUT = 60.0     # seconds a stalled transfer may sit idle before giving up
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """Anything that stops a download; main() prints it as one line."""


def is_complete(dataset_dir, name):
    """True when dataset_dir holds NAME.data/{train,test}/metadata.textproto and NAME.solution."""
    data = os.path.join(dataset_dir, f"{name}.data")
    return (os.path.isfile(os.path.join(dataset_dir, f"{name}.solution")) and
            all(os.path.isfile(os.path.join(data, split, "metadata.textproto"))
                for split in ("train", "test")))


def check_reachable(url, timeout=CONNECT_TIMEOUT):
    """Open (and close) a TCP connection to the URL's host, or raise DownloadError quickly."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result = {}

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            result["error"] = e

    # getaddrinfo ignores socket timeouts, and a dead resolver can hang for many seconds, so
    # the whole attempt runs in a daemon thread that we stop waiting for.
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if worker.is_alive() or "error" in result:
        reason = result.get("error") or f"no answer within {timeout:g} s"
        raise DownloadError(f"cannot reach {host}:{port} ({reason}); are you offline? "
                            f"Nothing was downloaded.")


def fetch(url, dest, progress=True):
    """Download url to dest: a .part file renamed at the end, so dest is whole or absent."""
    from tqdm import tqdm

    partial = dest + ".part"
    try:
        with urllib.request.urlopen(url, timeout=READ_TIMEOUT) as response, \
                open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=os.path.basename(dest), disable=not progress, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise DownloadError(f"{url}: got {out.tell()} of {total} bytes")
        os.replace(partial, dest)
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _unpack(zip_path, into):
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(into)  # extractall drops absolute paths and '..' parts
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{os.path.basename(zip_path)}: not a valid zip ({e})") from None


def _find(root, entry):
    """Path of `entry` at root or one folder down (zips may wrap it in a top folder)."""
    for folder in [root] + sorted(os.path.join(root, d) for d in os.listdir(root)):
        if os.path.exists(os.path.join(folder, entry)):
            return os.path.join(folder, entry)
    return None


def download_dataset(name, out_dir, progress=True):
    """Fetch, unpack and check one dataset, then move it into out_dir/name atomically."""
    target = os.path.join(out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir)
    try:
        unpacked = os.path.join(staging, "unpacked")
        final = os.path.join(staging, name)
        os.makedirs(final)
        os.makedirs(unpacked)
        for url, suffix in zip(URLS[name], (".data.zip", ".solution.zip")):
            zip_path = os.path.join(staging, name + suffix)
            fetch(url, zip_path, progress)
            _unpack(zip_path, unpacked)
            os.remove(zip_path)  # halves the peak disk use for the big sets
        for entry in (f"{name}.data", f"{name}.solution", f"{name}_label.name"):
            found = _find(unpacked, entry)
            if found:
                os.rename(found, os.path.join(final, entry))
        if not is_complete(final, name):
            raise DownloadError(f"{name}: the zips do not hold {name}.data/train, "
                                f"{name}.data/test and {name}.solution")
        if os.path.exists(target):  # an earlier incomplete copy, by is_complete's verdict
            shutil.rmtree(target)
        os.rename(final, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="+", default=list(URLS), metavar="NAME",
                        help=f"datasets to fetch (default: all of {', '.join(URLS)})")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder to put NAME/ folders in")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in URLS]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(URLS)}")
    out = os.path.abspath(args.out)
    todo = [n for n in dict.fromkeys(args.names) if not is_complete(os.path.join(out, n), n)]
    for name in sorted(set(args.names) - set(todo)):
        print(f"{name}: already complete in {os.path.join(out, name)}, skipped")
    if not todo:
        return 0
    created_out = not os.path.isdir(out)
    try:
        # Fail in seconds, before any folder is made, when the host cannot be reached.
        hosts = {urllib.parse.urlsplit(url).netloc: url for n in todo for url in URLS[n]}
        for url in hosts.values():
            check_reachable(url)
        for name in todo:
            print(f"{name}: downloading")
            print(f"{name}: ready in {download_dataset(name, out, not args.quiet)}")
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no partial dataset was kept", file=sys.stderr)
        return 130
    finally:
        if created_out and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)  # leave no empty folder behind after a failure
    return 0


if __name__ == "__main__":
    sys.exit(main())
