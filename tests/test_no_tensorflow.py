"""The harness where TensorFlow cannot be imported: a submission that never iterates the
tf.data datasets runs; one that does gets a one-line error naming the package."""
import os
import sys

import pytest
# The last test below imports TensorFlow in this process: torchvision (triton) must come first,
# or a later test that loads it segfaults (see conftest.py).
import torchvision  # noqa: F401

from autodl import run_local_test
from autodl.tfdata import TENSORFLOW_PACKAGE, AutoDLDataset, TensorFlowMissing

SCRIPTED = os.path.join(os.path.dirname(__file__), "submissions", "scripted")


def test_datasets_are_built_on_first_use_where_tensorflow_is_missing(tiny_dataset,
                                                                     monkeypatch):
    split = os.path.join(tiny_dataset(), "tiny.data", "train")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
        dataset = AutoDLDataset(split)
        data = dataset.get_dataset()  # no error yet: nothing was iterated
        assert dataset.get_metadata().size() == 60 and dataset.get_class_labels() is None
        assert data is dataset.get_dataset()
        assert not hasattr(data, "__array__")  # probes are not uses
        import copy
        assert copy.copy(data)._metadata is data._metadata
        for use in (lambda: next(iter(data)), lambda: len(data), lambda: data.take(1),
                    lambda: dataset.get_nth_element(0)):
            with pytest.raises(TensorFlowMissing) as error:
                use()
            message = str(error.value)
            assert f"pip install {TENSORFLOW_PACKAGE}" in message and split in message
            assert "\n" not in message
    # TensorFlow back: the same stand-in builds the dataset on its first use.
    assert len(list(data)) == 60
    example, labels = dataset.get_nth_element(2)
    assert example.shape == (1, 6, 6, 1) and labels.shape == (3,)


@pytest.fixture
def no_tensorflow(tmp_path, monkeypatch):
    """Child processes (ingestion, scoring) cannot import TensorFlow."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\nsys.modules['tensorflow'] = None  # test shim: no TensorFlow here\n")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(shim) + (os.pathsep + path if path else ""))


def _run(tmp_path, dataset, behaviour, monkeypatch):
    monkeypatch.setenv("SCRIPTED_BEHAVIOUR", behaviour)
    return run_local_test.run(dataset, SCRIPTED, 60, output_dir=tmp_path / "out",
                              score_dir=tmp_path / "scores", progress=False)


@pytest.mark.slow
def test_a_submission_that_never_iterates_runs_without_tensorflow(
        tmp_path, tiny_dataset, monkeypatch, no_tensorflow):
    summary = _run(tmp_path, tiny_dataset(), "metadata_only", monkeypatch)
    assert summary["ingestion_success"], summary["error"]
    assert summary["num_predictions"] == 3 and summary["alc"] is not None


@pytest.mark.slow
def test_a_submission_that_iterates_gets_one_line_naming_the_package(
        tmp_path, tiny_dataset, monkeypatch, no_tensorflow):
    summary = _run(tmp_path, tiny_dataset(), "good", monkeypatch)
    assert not summary["ingestion_success"] and summary["num_predictions"] == 0
    assert summary["error"].startswith("test() call 0 raised TensorFlowMissing: ")
    assert f"pip install {TENSORFLOW_PACKAGE}" in summary["error"]
    log = (tmp_path / "out" / "ingestion.log").read_text()
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if "error:" in line] == [
        f"[ingestion] error: {summary['error']}"]
