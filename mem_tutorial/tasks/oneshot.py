"""One-shot classification episodes (Santoro et al. 2016, Section 4.1) on scikit-learn's 8x8 digits.

Omniglot (1,623 hand-drawn characters, 20 drawings each) is the paper's data set; it is a download. The digits
set ships inside scikit-learn (1,797 images, 8x8, 10 classes), so the chapter runs offline. As in the paper,
rotations by 90°, 180° and 270° make new classes (here 10 digits x 4 = 40 classes), classes are split into
training and test classes that never meet, and in each episode C classes are drawn, their labels are shuffled,
and the label of each image is shown one step *after* the image: the model must bind image and label in
memory within the episode, because the labels mean nothing across episodes.

Shapes: B episodes, T steps (C classes x `per_class` instances), X = 64 pixels, C classes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch.nn import functional as F

from mem_tutorial.models.mann import MANN, LSTMClassifier, MANNConfig
from mem_tutorial.train import load_checkpoint, save_checkpoint

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
N_TEST_CLASSES = 10


class DigitsMissing(ImportError):
    pass


def load_classes() -> list[torch.Tensor]:
    """40 classes (digit d rotated by 90°·r is class 10·r + d), each [n_d, 64] with pixels in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover
        raise DigitsMissing("scikit-learn is needed for the digits: pip install scikit-learn") from exc
    d = load_digits()
    images = torch.tensor(d.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(d.target)
    out = []
    for r in range(4):
        rot = torch.rot90(images, r, dims=(1, 2)).reshape(-1, 64)
        out += [rot[labels == c] for c in range(10)]
    return out


def split_classes(classes: list[torch.Tensor], seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(training classes, test classes): a seeded split, N_TEST_CLASSES test classes never used in training."""
    perm = torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed)).tolist()
    test = set(perm[:N_TEST_CLASSES])
    return [c for i, c in enumerate(classes) if i not in test], [c for i, c in enumerate(classes) if i in test]


class Episodes(NamedTuple):
    x: torch.Tensor  # [B, T, 64]
    y: torch.Tensor  # [B, T] labels 0..C-1 (shuffled per episode)
    y_prev: torch.Tensor  # [B, T, C] one-hot label of the previous step (zeros at t = 0)
    instance: torch.Tensor  # [B, T] 1 for the first time a class appears in the episode, 2 the second, ...


def episodes(classes: list[torch.Tensor], batch: int, n_way: int = 5, per_class: int = 10,
             generator: torch.Generator | None = None) -> Episodes:
    """``batch`` episodes of ``n_way`` classes x ``per_class`` images in random order, labels shuffled."""
    g = generator
    xs, ys = [], []
    for _ in range(batch):
        chosen = torch.randperm(len(classes), generator=g)[:n_way].tolist()
        labels = torch.randperm(n_way, generator=g)
        x = torch.cat([classes[c][torch.randperm(len(classes[c]), generator=g)[:per_class]] for c in chosen])
        y = labels.repeat_interleave(per_class)
        order = torch.randperm(len(y), generator=g)
        xs.append(x[order])
        ys.append(y[order])
    x, y = torch.stack(xs), torch.stack(ys)
    onehot = F.one_hot(y, n_way).float()
    y_prev = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
    same = (y.unsqueeze(2) == y.unsqueeze(1)) & torch.ones(y.shape[1], y.shape[1], dtype=torch.bool).tril()
    return Episodes(x, y, y_prev, same.sum(-1))


def accuracy_by_instance(logits: torch.Tensor, ep: Episodes, max_instance: int = 10) -> torch.Tensor:
    """[max_instance] accuracy on the 1st, 2nd, ... presentation of a class."""
    correct = (logits.argmax(-1) == ep.y).float()
    return torch.stack([correct[ep.instance == i].mean() for i in range(1, max_instance + 1)])


def train(model, classes, steps: int, batch: int = 16, lr: float = 1e-3, seed: int = 0, log_every: int = 0,
          on_log=None):
    """Adam on the cross-entropy of every step of ``steps`` batches of episodes; ``on_log(step, losses)`` is called
    every ``log_every`` steps (e.g. to save a checkpoint). Returns the loss of every step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for step in range(steps):
        ep = episodes(classes, batch, generator=g)
        logits = model(ep.x, ep.y_prev)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ep.y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            with torch.no_grad():
                acc = accuracy_by_instance(logits, ep)
            print(f"step {step + 1:6d} loss {sum(losses[-log_every:]) / log_every:.4f} "
                  f"acc 1st {acc[0]:.2f} 2nd {acc[1]:.2f} 5th {acc[4]:.2f} 10th {acc[9]:.2f}", flush=True)
            if on_log is not None:
                on_log(step + 1, losses)
    model.eval()
    return losses


@torch.no_grad()
def evaluate(model, classes, episodes_n: int = 500, batch: int = 100, seed: int = 1) -> torch.Tensor:
    """[10] mean accuracy by presentation on ``episodes_n`` episodes of ``classes``."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    accs = []
    for _ in range(max(1, episodes_n // batch)):
        ep = episodes(classes, batch, generator=g)
        accs.append(accuracy_by_instance(model(ep.x, ep.y_prev), ep))
    return torch.stack(accs).mean(0)


STEPS = {"fast": {"lstm": 1000, "mann": 3000}, "full": {"lstm": 5000, "mann": 10000}}


def train_and_save(size: str = "fast", seed: int = 0, which=("lstm", "mann"), lr: float = 2e-3,
                   out: Path = CHECKPOINTS) -> None:
    """Train the LSTM baseline and the MANN on the training classes (episodes of 32, Adam); the checkpoints
    (``lstm_digits.pt``, ``mann_digits.pt``) are saved every 100 steps, so a long run can be stopped at any time."""
    train_cls, _ = split_classes(load_classes())
    for name in which:
        model = MANN(MANNConfig()) if name == "mann" else LSTMClassifier()
        torch.manual_seed(seed)
        cfg = vars(model.cfg) if name == "mann" else model.cfg
        t0 = time.process_time()

        def save(step, losses, name=name, model=model, cfg=cfg, t0=t0):
            save_checkpoint(Path(out) / f"{name}_digits.pt", model, dict(cfg), losses=[round(x, 4) for x in losses],
                            steps=step, episodes=32 * step, lr=lr, cpu_s=round(time.process_time() - t0, 1))

        train(model, train_cls, STEPS[size][name], batch=32, lr=lr, seed=seed, log_every=100, on_log=save)


def load_models(folder: Path = CHECKPOINTS) -> tuple[MANN, LSTMClassifier, dict]:
    """The trained MANN and LSTM (and their checkpoints' extra information: steps, episodes, CPU seconds)."""
    mann, lstm = MANN(MANNConfig()), LSTMClassifier()
    info = {"mann": load_checkpoint(Path(folder) / "mann_digits.pt", mann)["extra"],
            "lstm": load_checkpoint(Path(folder) / "lstm_digits.pt", lstm)["extra"]}
    return mann.eval(), lstm.eval(), info


def evaluate_checkpoints(episodes: int = 500, folder: Path = CHECKPOINTS) -> dict:
    _, test_cls = split_classes(load_classes())
    mann, lstm, info = load_models(folder)
    out = {}
    for name, model in (("mann", mann), ("lstm", lstm)):
        acc = evaluate(model, test_cls, episodes)
        out[f"{name}_test_accuracy_by_instance"] = [round(float(a), 4) for a in acc]
        out[f"{name}_train_cpu_s"] = info[name].get("cpu_s")
        out[f"{name}_train_steps"] = info[name].get("steps")
    return out
