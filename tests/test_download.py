"""The public-dataset downloader: fails fast offline, unpacks, checks, skips, cleans up.

No test touches the internet: URLs point at a closed local port or at a local HTTP server.
"""
import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from autodl import download_public_datasets as dl
from autodl.writer import write_dataset

SCRIPT = dl.__file__


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def zip_tree(zip_path, root, entries, wrap=None):
    """Zip `entries` (files or folders under root), optionally inside a top folder `wrap`."""
    with zipfile.ZipFile(zip_path, "w") as z:
        for entry in entries:
            base = os.path.join(root, entry)
            paths = [base] if os.path.isfile(base) else [
                os.path.join(d, f) for d, _, files in os.walk(base) for f in files]
            for path in paths:
                arcname = os.path.relpath(path, root)
                z.write(path, os.path.join(wrap, arcname) if wrap else arcname)


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over tmp_path/www with Tiny.data.zip and Tiny.solution.zip."""
    rng = np.random.default_rng(0)
    xs = list(rng.uniform(0, 1, (6, 4, 4, 1)).astype(np.float32))
    source = write_dataset(tmp_path / "source", "Tiny", train=(xs, [0, 1, 0, 1, 0, 1]),
                           test=(xs[:2], [0, 1]), output_dim=2)
    www = tmp_path / "www"
    www.mkdir()
    zip_tree(www / "Tiny.data.zip", source, ["Tiny.data"])
    zip_tree(www / "Tiny.solution.zip", source, ["Tiny.solution"])
    handler = functools.partial(QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def leftovers(out):
    return sorted(os.listdir(out)) if os.path.isdir(out) else None


def test_offline_fails_fast_with_one_line_and_no_folder(tmp_path, monkeypatch, capsys):
    port = closed_port()
    monkeypatch.setitem(dl.URLS, "Munster", (f"http://127.0.0.1:{port}/Munster.data.zip",
                                             f"http://127.0.0.1:{port}/Munster.solution.zip"))
    out = tmp_path / "public"
    start = time.time()
    code = dl.main(["--names", "Munster", "--out", str(out), "--quiet"])
    assert time.time() - start < 3
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach 127.0.0.1:") and "\n" not in err
    assert not out.exists()


def test_unanswered_host_is_given_up_after_the_timeout(monkeypatch):
    # A resolver or connect that hangs must not hang the script.
    def hang(*args, **kwargs):
        time.sleep(30)
        raise OSError("hung")  # the thread outlives the test: end it cleanly, not on None

    monkeypatch.setattr(dl.socket, "create_connection", hang)
    start = time.time()
    with pytest.raises(dl.DownloadError, match="no answer within 0.3 s"):
        dl.check_reachable("https://example.invalid/x.zip", timeout=0.3)
    assert time.time() - start < 2


@pytest.mark.slow
def test_runs_as_a_script():
    # As a user runs it (no package context); --help fetches nothing, wherever it runs.
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and "--names" in result.stdout


def test_downloads_unpacks_and_then_skips(served, tmp_path, monkeypatch, capsys):
    www, base = served
    monkeypatch.setitem(dl.URLS, "Tiny", (base + "Tiny.data.zip", base + "Tiny.solution.zip"))
    out = tmp_path / "public"
    assert dl.main(["--names", "Tiny", "--out", str(out), "--quiet"]) == 0
    target = out / "Tiny"
    assert sorted(os.listdir(target)) == ["Tiny.data", "Tiny.solution"]
    assert sorted(os.listdir(target / "Tiny.data")) == ["test", "train"]
    assert (target / "Tiny.data" / "train" / "sample-Tiny-train.tfrecord").is_file()
    assert leftovers(out) == ["Tiny"]  # no staging folder, no zip, no .part file

    # Second run: complete already, so nothing is fetched (not even a reachability check).
    def no_network(*args, **kwargs):
        raise AssertionError("a complete dataset must not be fetched again")

    monkeypatch.setattr(dl, "fetch", no_network)
    monkeypatch.setattr(dl, "check_reachable", no_network)
    capsys.readouterr()
    assert dl.main(["--names", "Tiny", "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out


def test_zip_with_a_wrapping_folder_is_accepted(tmp_path, monkeypatch):
    source = write_dataset(tmp_path / "src", "Wrap", train=([np.zeros((2, 2, 1))], [0]),
                           test=([np.zeros((2, 2, 1))], [0]), output_dim=1)
    zips = tmp_path / "zips"
    zips.mkdir()
    zip_tree(zips / "Wrap.data.zip", source, ["Wrap.data"], wrap="Wrap")
    zip_tree(zips / "Wrap.solution.zip", source, ["Wrap.solution"])
    monkeypatch.setitem(dl.URLS, "Wrap", ("Wrap.data.zip", "Wrap.solution.zip"))
    # Copy from local files in place of HTTP: exercises unpacking, checking and moving.
    monkeypatch.setattr(dl, "fetch", lambda url, dest, progress=True:
                        dl.shutil.copy(zips / url, dest))
    target = dl.download_dataset("Wrap", str(tmp_path / "out"), progress=False)
    assert dl.is_complete(target, "Wrap")
    assert sorted(os.listdir(tmp_path / "out")) == ["Wrap"]


def test_missing_file_on_server_leaves_nothing(served, tmp_path, monkeypatch, capsys):
    www, base = served
    monkeypatch.setitem(dl.URLS, "Tiny", (base + "Tiny.data.zip", base + "Nope.solution.zip"))
    out = tmp_path / "public"
    assert dl.main(["--names", "Tiny", "--out", str(out), "--quiet"]) == 1
    assert "Nope.solution.zip" in capsys.readouterr().err
    assert not out.exists()


def test_incomplete_zip_contents_are_rejected(served, tmp_path, monkeypatch, capsys):
    www, base = served
    (www / "Empty.zip").write_bytes(open(www / "Tiny.solution.zip", "rb").read())
    # The "data" zip holds only the solution: no Tiny.data folder appears.
    monkeypatch.setitem(dl.URLS, "Tiny", (base + "Empty.zip", base + "Tiny.solution.zip"))
    out = tmp_path / "public"
    out.mkdir()  # an existing folder is kept, but nothing is added to it
    assert dl.main(["--names", "Tiny", "--out", str(out), "--quiet"]) == 1
    assert "do not hold" in capsys.readouterr().err
    assert leftovers(out) == []


def test_unknown_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        dl.main(["--names", "Nope"])
    assert exit_info.value.code == 2
