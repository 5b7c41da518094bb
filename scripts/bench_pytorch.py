"""PyTorch's figure for `cargo xtask bench`'s workload, on the same machine.

MLPs 784-256-128-10 and 784-512-256-10 and the CNNs (the seeds' 32c3-64c3-128 and LeNet-5), ReLU, and the
recurrent classifiers, cross-entropy, Adam (lr 1e-3), on the first 50 batches of the vendored MNIST training
set (normalised with the mean/std of the first 10,000 images), cycled; and train-all's Transformer language
model (d128, 4 heads, 3 pre-norm GELU layers, feed-forward 512, learned positions, causal mask) on the first
400 windows of 128 characters of the vendored Shakespeare training part, in batches of 8. 20 warm-up steps,
then `--steps` timed steps, on `--threads` threads (default 2, as the 2-core machine gives Kiln). Prints
samples/s per network and writes JSON. `cargo xtask bench --vs-pytorch` runs it once per measurement with
`--network NAME`, alternating with Kiln.

    pip install torch numpy
    python3 scripts/bench_pytorch.py --batch 64 --steps 300 --out reports/bench/pytorch.json
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
from torch import nn


LM_CONTEXT = 128
LM_BATCH = 8


def mnist_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h * w)


def mnist_labels(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=8)


def networks():
    """The networks of `cargo xtask bench`, built lazily and seeded."""
    for hidden in ([256, 128], [512, 256]):
        torch.manual_seed(0)
        sizes = [784] + hidden
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        yield "MLP 784-" + "-".join(map(str, hidden)) + "-10", nn.Sequential(*layers, nn.Linear(sizes[-1], 10))
    torch.manual_seed(0)
    yield "CNN 32c3-64c3-128", nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    torch.manual_seed(0)
    yield "CNN LeNet-5", nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    for name, cell in (("LSTM", nn.LSTM), ("GRU", nn.GRU), ("RNN", nn.RNN)):
        torch.manual_seed(0)
        yield f"{name} 28x28 h128", RowsRecurrent(cell)


class RowsRecurrent(nn.Module):
    """A recurrent classifier reading the 28 rows of an image as steps; logits from the last hidden state."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(28, 128, batch_first=True)
        self.output = nn.Linear(128, 10)

    def forward(self, x):
        _, state = self.rnn(x.view(-1, 28, 28))
        h = state[0] if isinstance(state, tuple) else state
        return self.output(h[-1])


class TransformerLm(nn.Module):
    """train-all's Transformer character language model (kiln_models::TransformerLm, no dropout)."""

    def __init__(self, vocab, d=128, heads=4, layers=3, d_ff=512, context=LM_CONTEXT):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(context, d)
        layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.output = nn.Linear(d, vocab)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens):
        steps = tokens.shape[1]
        x = self.embedding(tokens) + self.positions(torch.arange(steps))
        x = self.encoder(x, mask=self.causal[:steps, :steps], is_causal=True)
        return self.output(self.norm(x))


def shakespeare_batches(root):
    """The first 50 batches of 8 non-overlapping 129-id windows of the training part (first 90%), ids as
    kiln_data's CharVocab gives them (sorted characters from 1, 0 unknown)."""
    with gzip.open(os.path.join(root, "shakespeare", "shakespeare.txt.gz"), "rt", encoding="utf-8") as f:
        text = f.read()
    train = text[: int(len(text) * 0.9)]
    vocab = {c: i + 1 for i, c in enumerate(sorted(set(train)))}
    n = 50 * LM_BATCH
    ids = torch.tensor([vocab[c] for c in train[: n * LM_CONTEXT + 1]])
    windows = torch.stack([ids[i * LM_CONTEXT : i * LM_CONTEXT + LM_CONTEXT + 1] for i in range(n)])
    batches = [(w[:, :-1], w[:, 1:]) for w in windows.split(LM_BATCH)]
    return len(vocab) + 1, batches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="reports/bench/pytorch.json")
    ap.add_argument("--only", default=None, help="measure only networks whose name contains this text")
    ap.add_argument("--network", default=None, help="measure only the network of exactly this name")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--quiet", action="store_true", help="print nothing; write the JSON only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def wanted(name):
        if args.network is not None:
            return name == args.network
        return not args.only or args.only in name
    data = os.path.join(os.path.dirname(__file__), "..", "data")
    root = os.path.join(data, "mnist")
    x = mnist_images(os.path.join(root, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = mnist_labels(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    mean, std = x[:10000].mean(), x[:10000].std()
    n = 50 * args.batch
    xs = torch.from_numpy((x[:n] - mean) / std)
    ys = torch.from_numpy(y[:n])
    batches = [(xs[i : i + args.batch], ys[i : i + args.batch]) for i in range(0, n, args.batch)]
    figures = []
    workloads = [(name, model, batches, args.batch) for name, model in networks() if wanted(name)]
    lm_name = "Transformer LM d128 3L ctx128"
    if wanted(lm_name):
        vocab, lm_batches = shakespeare_batches(data)
        torch.manual_seed(0)
        workloads.append((lm_name, TransformerLm(vocab), lm_batches, LM_BATCH))
    if not workloads:
        raise SystemExit(f"no network matches --network {args.network!r} / --only {args.only!r}")
    for name, model, batches, batch in workloads:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()

        def run(steps):
            loss = None
            for i in range(steps):
                bx, by = batches[i % len(batches)]
                opt.zero_grad()
                out = model(bx)
                loss = loss_fn(out.reshape(-1, out.shape[-1]), by.reshape(-1))
                loss.backward()
                opt.step()
            return float(loss.detach())

        run(20)
        t = time.perf_counter()
        loss = run(args.steps)
        secs = time.perf_counter() - t
        sps = args.steps * batch / secs
        if not args.quiet:
            print(f"pytorch  {name:<22} batch {batch:>4}: {sps:>9.0f} samples/s "
                  f"({1000 * secs / args.steps:.2f} ms/step, final loss {loss:.3f}, "
                  f"torch {torch.__version__}, {torch.get_num_threads()} threads)")
        figures.append({"device": "pytorch-cpu", "network": name, "batch": batch, "steps": args.steps,
                        "samples_per_second": sps, "ms_per_step": 1000 * secs / args.steps})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
