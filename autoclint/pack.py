"""The submission zip: model.py at the root, skeleton/, configs/ and weight files in models/."""
import os
import zipfile

from autodl import guard

from . import REPO

ZIP_LIMIT_BYTES = 300 * 2 ** 20  # the platform's limit on a submission
WEIGHT_EXTENSIONS = (".pth", ".pt", ".bin", ".npz", ".h5", ".onnx")
PACKED_FOLDERS = ("skeleton", "configs")


class PackError(ValueError):
    """A zip destination or size the tool refuses (one line for the user)."""


def packaged_weights():
    """[(distribution, top-level module, file inside it)] of weights that ship in installed
    packages; the platform has no such package, so the zip carries them in models/, where
    skeleton/nn looks first."""
    from skeleton.nn import torchvision_nets
    return [(torchvision_nets.MOBILENET_DIST, torchvision_nets.MOBILENET_TOP,
             torchvision_nets.MOBILENET_FILE)]


def submission_files(repo=REPO):
    """(path on disk, path in the zip): model.py at the root, skeleton/, configs/, weights."""
    from skeleton.nn.weights import package_file
    files = [(os.path.join(repo, "model.py"), "model.py")]
    for folder in PACKED_FOLDERS:
        for d, dirs, names in os.walk(os.path.join(repo, folder)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            files += [(os.path.join(d, n), os.path.relpath(os.path.join(d, n), repo))
                      for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    models = os.path.join(repo, "models")
    if os.path.isdir(models):
        files += [(os.path.join(models, n), f"models/{n}") for n in sorted(os.listdir(models))
                  if n.endswith(WEIGHT_EXTENSIONS)]
    packed = {arcname for _, arcname in files}
    for distribution, top, relative in packaged_weights():
        path = package_file(distribution, top, relative)
        arcname = f"models/{os.path.basename(relative)}"
        if path is not None and arcname not in packed:
            files.append((path, arcname))
    return files


def check_destination(out, repo=REPO):
    """The zip may only replace a zip, never a folder or a file of the repository, nor land
    where the next zip would pack it."""
    if os.path.isdir(out):
        raise PackError(f"{out}: is a folder; give the zip file's name")
    for folder in (*PACKED_FOLDERS, "models"):
        guard.refuse_overlap("--out", out, [(f"packed folder {folder}/",
                                             os.path.join(repo, folder))], PackError)
    if os.path.exists(out) and not zipfile.is_zipfile(out):
        raise PackError(f"{out}: exists and is not a zip file; refusing to overwrite it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise PackError(f"{out}: the folder {parent} does not exist")


def build_zip(out, repo=REPO, limit=ZIP_LIMIT_BYTES):
    """Write the submission zip; returns (path, number of files, size in bytes)."""
    check_destination(out, repo)
    if not os.path.isfile(os.path.join(repo, "model.py")):
        raise PackError(f"{repo}: no model.py here; the zip is built from a checkout "
                        f"(pip install -e .)")
    files = submission_files(repo)
    tmp = out + ".partial"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for path, arcname in files:
                z.write(path, arcname)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    size = os.path.getsize(tmp)
    if size > limit:
        os.unlink(tmp)
        raise PackError(f"{out}: {size / 2 ** 20:.1f} MB is over the platform's "
                        f"{limit / 2 ** 20:.0f} MB limit (weights in models/?)")
    os.replace(tmp, out)
    return out, len(files), size
