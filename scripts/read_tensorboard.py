#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own reader and prints what it found as JSON:
{"scalars": {tag: [[step, value], ...]}, "histograms": {tag: [[step, count], ...]}, "images": {tag: [step, ...]}}.

Used by Kiln's tests (`crates/train/tests/tensorboard.rs`) to check the files Kiln writes against the real
`tensorboard` package (`pip install tensorboard`)."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(folder):
    acc = EventAccumulator(folder, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "histograms": {
            t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]
        },
        "images": {t: [e.step for e in acc.Images(t)] for t in tags["images"]},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
