"""skeleton/optim.py: torch.optim.SGD's Nesterov update (the trainer's optimiser) and the
L-BFGS the frozen-feature head is fitted with, both without torch.optim."""
import pytest
import torch

from skeleton.optim import NesterovSGD, lbfgs
from skeleton.transfer import LinearHead


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))


def test_same_steps_as_torch_sgd_with_groups_decay_and_missing_gradients():
    ours_net, torch_net = _model(0), _model(0)

    def groups(net):
        weights = [p for p in net.parameters() if p.ndim > 1]
        biases = [p for p in net.parameters() if p.ndim == 1]
        return [{"params": weights, "weight_decay": 5e-4, "lr_scale": 1.0},
                {"params": biases, "weight_decay": 0.0, "lr_scale": 0.1}]

    ours = NesterovSGD(groups(ours_net), lr=0.1, momentum=0.9)
    reference = torch.optim.SGD(groups(torch_net), lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for step in range(6):
        for optimizer, net in ((ours, ours_net), (reference, torch_net)):
            for group in optimizer.param_groups:  # the trainer sets the rate every step
                group["lr"] = (0.1 - 0.01 * step) * group["lr_scale"]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            if step == 2:  # a parameter without a gradient this step is left alone
                net[2].bias.grad = None
            optimizer.step()
        for a, b in zip(ours_net.parameters(), torch_net.parameters()):
            torch.testing.assert_close(a, b)
    assert not torch.equal(ours_net[0].weight, _model(0)[0].weight)  # it did move


def test_grad_scaler_drives_it_like_a_torch_optimizer():
    """fp16's loss scaling: the scaler unscales the gradients before our step, so the
    update equals the unscaled one."""
    scaled_net, plain_net = _model(1), _model(1)
    x = torch.randn(8, 5)
    scaled = NesterovSGD([{"params": scaled_net.parameters(), "weight_decay": 0.0}], 0.05, 0.9)
    plain = NesterovSGD([{"params": plain_net.parameters(), "weight_decay": 0.0}], 0.05, 0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    for _ in range(2):
        scaler.scale(scaled_net(x).pow(2).mean()).backward()
        scaler.step(scaled)
        scaler.update()
        scaled.zero_grad()
        plain_net(x).pow(2).mean().backward()
        plain.step()
        plain.zero_grad()
    for a, b in zip(scaled_net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(a, b)
    assert not torch.equal(plain_net[0].weight, _model(1)[0].weight)


def test_lbfgs_finds_the_minimum_of_a_convex_function():
    torch.manual_seed(0)  # float64: in float32 the line search stalls on round-off first
    a = torch.randn(30, 8, dtype=torch.float64)
    h = a.T @ a / 30 + 0.1 * torch.eye(8, dtype=torch.float64)
    c = torch.randn(8, dtype=torch.float64)
    # 0.5 x'Hx - c'x + a softplus term: smooth, convex, minimum where Hx - c + ... = 0
    def loss_and_grad(x):
        x = x.detach().requires_grad_(True)
        loss = 0.5 * x @ h @ x - c @ x + torch.nn.functional.softplus(x).sum()
        grad, = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad
    x = lbfgs(loss_and_grad, torch.zeros(8, dtype=torch.float64), max_iter=200)
    assert float(loss_and_grad(x)[1].abs().max()) < 1e-6


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_heads_hand_made_gradient_reaches_torchs_optimum(multi_label):
    """LinearHead fits with lbfgs and a gradient written by hand: the weights must be the
    minimum torch.optim.LBFGS finds with autograd on the same penalised objective."""
    torch.manual_seed(1)
    f = torch.randn(200, 12)
    if multi_label:
        y = (torch.rand(200, 3) < 0.3).float()
    else:
        y = torch.nn.functional.one_hot(torch.randint(0, 3, (200,)), 3).float()
    l2 = 0.01
    head = LinearHead(multi_label, [l2], max_iter=200)
    w, b = head._fit_one(f, y, l2)
    w_ref = torch.zeros(12, 3, requires_grad=True)
    b_ref = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.LBFGS([w_ref, b_ref], max_iter=500, tolerance_grad=1e-10,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = f @ w_ref + b_ref
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y) if multi_label
                else torch.nn.functional.cross_entropy(logits, y.argmax(dim=1)))
        loss = loss + l2 * (w_ref * w_ref).sum()
        loss.backward()
        return loss
    optimizer.step(closure)
    torch.testing.assert_close(w, w_ref.detach(), atol=2e-3, rtol=0)
    torch.testing.assert_close(b, b_ref.detach(), atol=2e-3, rtol=0)
