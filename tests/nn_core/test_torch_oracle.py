"""PyTorch as an independent oracle: same network, same loss, same gradients, same Adam steps.

Skipped where torch is not installed (it comes with the `bench` extra).
"""

import numpy as np
import pytest

from nn_core import MLP
from nn_core.activations import ACTIVATIONS

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[bench]')")

TORCH_ACT = {
    "relu": torch.nn.functional.relu,
    "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda z: z,
    "silu": torch.nn.functional.silu,
    "gelu": lambda z: torch.nn.functional.gelu(z, approximate="tanh"),
}


def test_every_activation_has_a_torch_oracle():
    assert set(TORCH_ACT) == set(ACTIVATIONS)


def _torch_loss(params, X, y, sw, pos_weight, l2, activation, output):
    H = X
    for W, b in params[:-1]:
        H = TORCH_ACT[activation](H @ W + b)
    Z = (H @ params[-1][0] + params[-1][1])[:, 0]
    if output == "sigmoid":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            Z, y, weight=sw, pos_weight=torch.tensor(pos_weight, dtype=torch.float64)
        )
    else:
        loss = (sw * 0.5 * (Z - y) ** 2).mean()
    return loss + 0.5 * l2 * sum((W * W).sum() for W, _ in params)


def _setup(activation, output, hidden=(5, 4)):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 6))
    y = (rng.random(30) < 0.3).astype(float) if output == "sigmoid" else rng.normal(size=30)
    sw = rng.uniform(0.5, 2.0, 30)
    m = MLP(6, hidden, activation, output, dtype="float64", seed=1, backend="numpy")
    tparams = [
        (torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
        for W, b in m.params
    ]
    return X, y, sw, m, tparams


@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_loss_and_gradients_match_torch(activation, output):
    X, y, sw, m, tparams = _setup(activation, output)
    # For 0/1 labels, torch's pos_weight scales exactly the positive rows' loss.
    pos_weight = 3.0 if output == "sigmoid" else 1.0
    loss, grads = m.loss_and_grad(X, y, sample_weight=sw, pos_weight=pos_weight, l2=0.01)
    tloss = _torch_loss(
        tparams, *map(torch.tensor, (X, y, sw)), pos_weight, 0.01, activation, output
    )
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for (dW, db), (W, b) in zip(grads, tparams, strict=False):
        np.testing.assert_allclose(dW, W.grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db, b.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "name, make_torch_opt, fit_kwargs",
    [
        ("adam", lambda p: torch.optim.Adam(p, lr=0.01), {"optimizer": "adam"}),
        ("adamw", lambda p: None, {"optimizer": "adam", "weight_decay": 0.1}),
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.01), {"optimizer": "sgd"}),
        (
            "momentum",
            lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
            {"optimizer": "momentum"},
        ),
        (
            "nesterov",
            lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
            {"optimizer": "momentum", "nesterov": True},
        ),
    ],
)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_optimizer_steps_match_torch(name, make_torch_opt, fit_kwargs, backend):
    """Five full-batch steps: our optimizers against torch.optim's definitions."""
    X, y, sw, m, tparams = _setup("tanh", "sigmoid")
    m = MLP(6, (5, 4), "tanh", "sigmoid", dtype="float64", seed=1, backend=backend)
    flat = [t for pair in tparams for t in pair]
    weights = [W for W, _ in tparams]
    if name == "adamw":
        # Weight decay on weights only, as nn_core applies it (biases are not decayed).
        biases = [b for _, b in tparams]
        opt = torch.optim.AdamW(
            [{"params": weights, "weight_decay": 0.1}, {"params": biases, "weight_decay": 0.0}],
            lr=0.01,
        )
    else:
        opt = make_torch_opt(flat)
    tX, ty, tsw = map(torch.tensor, (X, y, sw))
    for _ in range(5):
        opt.zero_grad()
        _torch_loss(tparams, tX, ty, tsw, 1.0, 0.0, "tanh", "sigmoid").backward()
        opt.step()
    m.fit(X, y, epochs=5, batch_size=len(X), lr=0.01, sample_weight=sw, **fit_kwargs)
    for (W, b), (tW, tb) in zip(m.params, tparams, strict=False):
        np.testing.assert_allclose(W, tW.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, tb.detach().numpy(), rtol=1e-9, atol=1e-12)
