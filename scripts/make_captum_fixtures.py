"""Writes the Captum parity fixtures of kiln-explain (crates/explain/tests/fixtures/captum/).

For an MLP (784-32-16-10) and a CNN (conv 4@3x3 pad 1 - ReLU - max-pool 2 - conv 8@3x3 pad 1 - ReLU -
max-pool 2 - fc 16 - ReLU - fc 10), both at PyTorch's default initialisation under a fixed seed:

- `<model>.weights.safetensors` is the model's `state_dict()`;
- `<model>.io.safetensors` holds `x` [4, 28, 28] (the first four MNIST test digits, normalised with mean
  0.1307 and std 0.3081), `targets` (their labels, as floats), the `logits`, and Captum 0.9's attributions
  with respect to the target logit: `saliency` (`Saliency`, abs=True), `input_x_gradient` (`InputXGradient`),
  `integrated_gradients` and `integrated_gradients_delta` (`IntegratedGradients`, black baseline, 32 steps,
  Gauss-Legendre), `occlusion` (`Occlusion`, 4x4 windows, stride 4, black), and for the CNN `grad_cam`
  (`LayerGradCam` on the second block's output, after its max-pool; Captum's defaults) [4, 7, 7], and
  `smoothgrad` (`NoiseTunnel(Saliency)`, nt_type="smoothgrad", 5 samples, stdev 0.3) with the noise it drew,
  `smoothgrad_noise` [4 · 5, 28, 28] (row b · 5 + k is sample k of image b: NoiseTunnel repeats the inputs with
  `repeat_interleave` and draws one `torch.normal` for them all; the script re-draws it under the same seed
  and checks that it reproduces NoiseTunnel's result).

Both models read images [batch, 28, 28], as Kiln's do. Run from the repository root:
`pip install torch captum safetensors && python3 scripts/make_captum_fixtures.py`. The Rust tests
(crates/explain/tests/explain/captum_parity.rs) read the committed files; CI needs no Python.
"""

import gzip
import pathlib
import struct

import captum
import torch
from captum.attr import (IntegratedGradients, InputXGradient, LayerGradCam, NoiseTunnel, Occlusion,
                         Saliency)
from safetensors.torch import save_file
from torch import nn

OUT = pathlib.Path("crates/explain/tests/fixtures/captum")
MNIST = pathlib.Path("data/mnist")
MEAN, STD = 0.1307, 0.3081
COUNT = 4


def mnist_test(count):
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz") as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        pixels = torch.frombuffer(bytearray(f.read(count * rows * cols)), dtype=torch.uint8)
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = list(f.read(count))
    images = pixels.reshape(count, rows, cols).float() / 255.0
    return (images - MEAN) / STD, torch.tensor(labels)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(8 * 7 * 7, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.block1(x.unsqueeze(1)))
        return self.out(torch.relu(self.fc1(x.flatten(1))))


def attributions(model, x, targets, black):
    baseline = torch.full_like(x, black)
    ig, delta = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=targets, n_steps=32, method="gausslegendre",
        return_convergence_delta=True)
    io = {
        "x": x,
        "targets": targets.float(),
        "logits": model(x).detach(),
        "saliency": Saliency(model).attribute(x, target=targets, abs=True),
        "input_x_gradient": InputXGradient(model).attribute(x, target=targets),
        "integrated_gradients": ig,
        "integrated_gradients_delta": delta.float(),
        "occlusion": Occlusion(model).attribute(
            x, sliding_window_shapes=(4, 4), strides=(4, 4), baselines=black, target=targets),
    }
    # SmoothGrad: NoiseTunnel's one draw, replayed under the same seed.
    samples, stdev = 5, 0.3
    torch.manual_seed(1234)
    smooth = NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=targets)
    torch.manual_seed(1234)
    noise = torch.normal(0, torch.tensor(stdev).repeat((x.shape[0] * samples,) + tuple(x.shape[1:])))
    noisy = x.repeat_interleave(samples, dim=0) + noise
    replay = Saliency(model).attribute(
        noisy, target=targets.repeat_interleave(samples), abs=True
    ).reshape((x.shape[0], samples) + tuple(x.shape[1:])).mean(1)
    assert torch.allclose(replay, smooth, atol=1e-6), (replay - smooth).abs().max()
    io["smoothgrad"] = smooth
    io["smoothgrad_noise"] = noise.float()
    return {k: v.detach().contiguous() for k, v in io.items()}


def main():
    assert captum.__version__.startswith("0.9"), captum.__version__
    OUT.mkdir(parents=True, exist_ok=True)
    x, targets = mnist_test(COUNT)
    black = (0.0 - MEAN) / STD
    for seed, (name, model) in enumerate([("mlp", Mlp()), ("cnn", Cnn())]):
        torch.manual_seed(seed)
        model = type(model)().eval()
        io = attributions(model, x, targets, black)
        if name == "cnn":
            cam = LayerGradCam(model, model.block2).attribute(x, target=targets)
            io["grad_cam"] = cam.squeeze(1).detach().contiguous()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  OUT / f"{name}.weights.safetensors")
        save_file(io, OUT / f"{name}.io.safetensors")
        print(name, {k: tuple(v.shape) for k, v in io.items()})


if __name__ == "__main__":
    main()
