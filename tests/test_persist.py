"""Model files (skeleton/persist.py): a saved learner loads back and predicts as the run did;
the configuration goes in as plain values and comes back typed; older and unknown versions."""
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from skeleton import persist
from skeleton.config import load_config
from skeleton.data.profile import scan
from skeleton.nn import build_network
from skeleton.quick import QuickModel
from skeleton.trainer import Trainer


def _data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 1, 16, 16, 3), dtype=np.uint8)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    return x, y


def _learner(x, y, cfg, saved=None, source="net"):
    """What persist.save reads of a learner: the best model, the quick model and the feed."""
    meta = types.SimpleNamespace(get_label_to_index_map=lambda: {"a": 0, "b": 1, "c": 2})
    feed = types.SimpleNamespace(
        classes=3, metadata=meta, profile=scan([(f, l) for f, l in zip(x, y)], 3, True),
        shape=(1, 16, 16), cfg=cfg, valid_idx=np.arange(4))
    return types.SimpleNamespace(
        best=types.SimpleNamespace(source=source, saved=saved, savable=True),
        quick=QuickModel(cfg.quick).fit(x, y), feed=feed)


def _rewrite(src, dst, change):
    """A copy of the model file `src` at `dst`, its description changed by `change(state)`."""
    with np.load(src, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    state = json.loads(arrays[persist.META_KEY].tobytes().decode("utf-8"))
    change(state)
    arrays[persist.META_KEY] = np.frombuffer(json.dumps(state).encode("utf-8"), np.uint8)
    np.savez(dst, **arrays)


def test_persist_network_round_trip(tmp_path):
    """A learner whose best model is the network: the saved file predicts like the trainer."""
    x, y = _data()
    cfg = load_config("image")
    net = build_network("fastnet", 3, 3, weights="none")
    trainer = Trainer(net, cfg.train, torch.device("cpu"), False,
                      flip=False)
    trainer.save_best()

    def export():
        tta = cfg.train.tta_flip and trainer.flip
        return persist.SavedNetwork(trainer.net, trainer.best_state, 1.0, tta, (1, 16, 16))
    learner = _learner(x, y, cfg, export())
    assert persist.save(learner, str(tmp_path / "model.pt"))
    predictor = persist.load(str(tmp_path / "model.pt"))
    assert predictor.source == "net" and predictor.label_names == ["a", "b", "c"]
    description = persist.read_description(str(tmp_path / "model.pt"))
    assert description["net"]["precision"] == "fp32"  # the trainer's, on the CPU
    assert description["held_out"] == 4  # what the report says the model was chosen on
    # Flip TTA only where the run's flip probe allowed it (here: not), as test() does.
    expected = trainer.predict(x, tta_flip=False)
    assert np.allclose(predictor.predict_arrays(x), expected, atol=1e-4)
    trainer.flip = True  # the probe allowed flips: the saved model averages them too
    learner.best.saved = export()
    assert persist.save(learner, str(tmp_path / "flip.pt"))
    flipped = persist.load(str(tmp_path / "flip.pt")).predict_arrays(x)
    assert np.allclose(flipped, trainer.predict(x, tta_flip=True), atol=1e-4)
    assert not np.allclose(flipped, expected, atol=1e-4)
    for i in range(2):
        Image.fromarray(x[i, 0]).save(tmp_path / f"{i}.png")
    probs = predictor.predict_files([str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert np.allclose(probs, expected[:2], atol=1e-4)
    # A file of the version before (no extra sides among the network's options) still
    # loads; one of a version this tool does not know is one clear error.
    for version, readable in ((2, True), (persist.FORMAT_VERSION + 1, False)):
        def downgrade(state):
            state["version"] = version
            del state["net"]["options"]["extra_sizes"]
        _rewrite(str(tmp_path / "model.pt"), str(tmp_path / f"v{version}.npz"), downgrade)
        if readable:
            older = persist.load(str(tmp_path / f"v{version}.npz"))
            assert np.allclose(older.predict_arrays(x), expected, atol=1e-4)
        else:
            with pytest.raises(persist.ModelFileError, match=f"version {version} "):
                persist.load(str(tmp_path / f"v{version}.npz"))


def test_the_configuration_is_saved_as_plain_values_and_loads_typed(tmp_path):
    """A quick-model-only file: the description holds the configuration as JSON values (the
    tuples as lists); loading gives the quick model its typed section back."""
    x, y = _data()
    cfg = load_config("image", {"quick": {"random_features": 64}})
    learner = _learner(x, y, cfg, source="quick")
    path = str(tmp_path / "quick.pt")
    assert persist.save(learner, path)
    description = persist.read_description(path)
    assert description["cfg"] == cfg.to_dict()
    assert description["cfg"]["transfer"]["l2_grid"] == list(cfg.transfer.l2_grid)
    assert description["quick_cfg"] == cfg.quick.to_dict()
    predictor = persist.load(path)
    assert predictor.quick.cfg == cfg.quick
    np.testing.assert_array_equal(predictor.predict_arrays(x), learner.quick.predict(x))


@pytest.mark.parametrize("change, named", [
    (lambda quick: quick.update(ridge="strong"), "quick.ridge must be a number"),
    (lambda quick: quick.pop("pool_side"), "missing key 'quick.pool_side'"),
])
def test_a_saved_quick_section_that_does_not_check_is_a_damaged_file(tmp_path, change, named):
    x, y = _data()
    path = str(tmp_path / "quick.pt")
    assert persist.save(_learner(x, y, load_config("image"), source="quick"), path)
    _rewrite(path, str(tmp_path / "bad.npz"), lambda state: change(state["quick_cfg"]))
    with pytest.raises(persist.ModelFileError) as e:
        persist.load(str(tmp_path / "bad.npz"))
    message = str(e.value)
    assert "damaged model file" in message and named in message and "\n" not in message
