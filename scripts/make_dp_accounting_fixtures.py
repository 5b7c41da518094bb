"""Writes crates/privacy/tests/fixtures/dp_accounting.json: ε of Google's dp-accounting RdpAccountant
(default orders, add-or-remove-one neighbours) for the Poisson-subsampled Gaussian mechanism composed over
a grid of sampling rates, noise multipliers, step counts and δ, with the order that gives each ε.

The grid covers DP-SGD on MNIST as Abadi et al. (2016) ran it (lots of 600 of 60,000: q = 0.01; σ from 0.7 to
8; up to 100 epochs = 10,000 steps) and the batch sizes Kiln trains with. Run from the repository root:
`pip install dp-accounting && python3 scripts/make_dp_accounting_fixtures.py`. The Rust test
(crates/privacy/tests/privacy/accountant.rs) reads the committed file; CI needs no Python.
"""

import importlib.metadata
import json
import pathlib

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp

OUT = pathlib.Path("crates/privacy/tests/fixtures/dp_accounting.json")


def epsilon(q, sigma, steps, delta):
    accountant = rdp.RdpAccountant()
    event = dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma))
    accountant.compose(dp_event.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon_and_optimal_order(delta)


def main():
    cases = []
    for q in [0.001, 0.01, 128 / 60000, 256 / 60000, 0.1]:
        for sigma in [0.7, 1.1, 2.0, 4.0, 8.0]:
            for steps in [1, 100, 1000, 10000]:
                for delta in [1e-5, 1e-3]:
                    eps, order = epsilon(q, sigma, steps, delta)
                    cases.append({"sampling_rate": q, "noise_multiplier": sigma, "steps": steps,
                                  "delta": delta, "epsilon": eps, "order": order})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    version = importlib.metadata.version("dp-accounting")
    OUT.write_text(json.dumps({"dp_accounting": version, "cases": cases}, indent=1) + "\n")
    print(f"{len(cases)} cases written to {OUT}")


if __name__ == "__main__":
    main()
