"""The two optimisers the run uses, without torch.optim: SGD with Nesterov momentum (the
update torch.optim.SGD makes) for the networks, L-BFGS for the frozen-feature head.

Why not torch.optim: its first use imports torch._dynamo (1.4 s on this 2-core box, more
than torch itself), and that import stood between the quick model's prediction and the
network's first step, and the frozen head's first fit. GradScaler takes NesterovSGD as it
takes a torch optimizer (it only reads param_groups and calls step()).

SGD, per parameter p with gradient g, at rate lr, momentum m and weight decay wd (torch's
formulation, dampening 0): d = g + wd * p; buffer = d on the first step, else
m * buffer + d; p -= lr * (d + m * buffer).
"""
import torch


class NesterovSGD:
    def __init__(self, groups, lr, momentum):
        """groups: dicts with "params" and "weight_decay" (and any other keys the caller
        reads back, e.g. "lr_scale"); every group starts at rate `lr`."""
        self.momentum = momentum
        self.param_groups = [dict(group, params=list(group["params"]), lr=lr)
                             for group in groups]
        # id(parameter) -> momentum buffer, from its first step (the groups hold the
        # parameters, so their ids stay theirs)
        self.buffers = {}

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self):
        m = self.momentum
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            going = [i for i, p in enumerate(params) if id(p) in self.buffers]
            for i, p in enumerate(params):
                if id(p) not in self.buffers:  # first step: the buffer is the step itself
                    self.buffers[id(p)] = grads[i].detach().clone()
            buffers = [self.buffers[id(p)] for p in params]
            if going:
                torch._foreach_mul_([buffers[i] for i in going], m)
                torch._foreach_add_([buffers[i] for i in going], [grads[i] for i in going])
            updates = torch._foreach_add(grads, buffers, alpha=m)
            torch._foreach_add_(params, updates, alpha=-group["lr"])


def lbfgs(loss_and_grad, x, max_iter, history=10, grad_tol=1e-7, step_tol=1e-9,
          loss_tol=0.0):
    """Minimise a smooth function of the flat tensor x by L-BFGS with a backtracking (Armijo)
    line search; loss_and_grad(x) -> (loss as a float, gradient like x). Returns x. It stops
    after max_iter steps, or when the largest gradient entry, the largest step or the
    loss's relative decrease in one step falls to grad_tol, step_tol or loss_tol.

    For the frozen-feature head's convex objective (torch.optim.LBFGS would import
    torch._dynamo: see above). The first step is scaled to 1/|g|_1 as torch's is; later
    steps try the full quasi-Newton step first.
    """
    loss, grad = loss_and_grad(x)
    pairs = []  # (s, y, 1 / s.y) of the last `history` steps
    for iteration in range(max_iter):
        if float(grad.abs().max()) <= grad_tol:
            break
        q, alphas = -grad, []
        for s, y, rho in reversed(pairs):
            alpha = rho * float(s @ q)
            q = q - alpha * y
            alphas.append(alpha)
        if pairs:
            s, y, _ = pairs[-1]
            q = q * (float(s @ y) / float(y @ y))
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
            q = q + s * (alpha - rho * float(y @ q))
        slope = float(grad @ q)
        if slope >= 0:  # not a descent direction (round-off): restart from the gradient
            pairs, q = [], -grad
            slope = float(grad @ q)
        t = min(1.0, 1.0 / float(grad.abs().sum())) if not pairs else 1.0
        while True:
            candidate = x + t * q
            new_loss, new_grad = loss_and_grad(candidate)
            if new_loss <= loss + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        s, y = candidate - x, new_grad - grad
        sy = float(s @ y)
        if sy > 1e-10:
            pairs = (pairs + [(s, y, 1.0 / sy)])[-history:]
        decrease = loss - new_loss
        x, loss, grad = candidate, new_loss, new_grad
        if float(s.abs().max()) <= step_tol or decrease <= loss_tol * max(abs(loss), 1e-12):
            break
    return x
