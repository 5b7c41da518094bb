"""Writes the PyTorch parity fixtures of the recurrent models and of multi-head attention
(crates/models/tests/fixtures/torch/).

For each case, `<case>.weights.safetensors` is the module's `state_dict()` and `<case>.io.safetensors` holds
an input `x` [batch, steps, input], the initial state `h0` (and `c0`), and PyTorch's `out`, `hn` (and `cn`).
Masked cases also hold `lengths`; PyTorch runs them as a packed sequence, so padded outputs are zeros and the
final state is taken after each sequence's last real step.

Multi-head attention cases (`mha_*`) hold `torch.nn.MultiheadAttention(batch_first=True)`'s `state_dict()` and
an input `q`, `k`, `v` with PyTorch's `out`, and where used `key_padding_mask` ([batch, keys]) and `attn_mask`
([queries, keys]) as 0/1 floats (1 = not attended).

Run from the repository root: `pip install torch safetensors && python3 scripts/make_torch_fixtures.py`.
The Rust tests (crates/models/tests/torch_parity.rs) read the committed files; CI needs no Python.
"""

import pathlib

import torch
from safetensors.torch import save_file
from torch import nn

OUT = pathlib.Path("crates/models/tests/fixtures/torch")
INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 5

CASES = [
    # (name, module class, layers, bidirectional, masked)
    ("rnn_1layer", nn.RNN, 1, False, False),
    ("rnn_2layer_bi", nn.RNN, 2, True, False),
    ("gru_1layer", nn.GRU, 1, False, False),
    ("gru_2layer_bi", nn.GRU, 2, True, False),
    ("lstm_1layer", nn.LSTM, 1, False, False),
    ("lstm_2layer_bi", nn.LSTM, 2, True, False),
    ("lstm_2layer_bi_masked", nn.LSTM, 2, True, True),
    ("gru_2layer_bi_masked", nn.GRU, 2, True, True),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, cls, layers, bidirectional, masked) in enumerate(CASES):
        torch.manual_seed(100 + i)
        module = cls(INPUT, HIDDEN, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        slots = layers * (2 if bidirectional else 1)
        x = torch.randn(BATCH, STEPS, INPUT)
        h0 = torch.randn(slots, BATCH, HIDDEN)
        c0 = torch.randn(slots, BATCH, HIDDEN)
        state = (h0, c0) if cls is nn.LSTM else h0
        lengths = torch.tensor([STEPS, STEPS - 2])
        with torch.no_grad():
            if masked:
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=True)
                out, final = module(packed, state)
                out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=STEPS)
            else:
                out, final = module(x, state)
        io = {"x": x, "h0": h0, "out": out}
        if cls is nn.LSTM:
            io["c0"] = c0
            io["hn"], io["cn"] = final
        else:
            io["hn"] = final
        if masked:
            io["lengths"] = lengths.to(torch.float32)
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, OUT / f"{name}.weights.safetensors")
        save_file({k: v.contiguous() for k, v in io.items()}, OUT / f"{name}.io.safetensors")
        print(f"wrote {name}: {sorted(module.state_dict())}")


MHA_D, MHA_HEADS = 8, 2
MHA_CASES = [
    # (name, queries, keys, key padding lengths or None, causal)
    ("mha_self", 5, 5, None, False),
    ("mha_self_padded", 5, 5, [5, 3], False),
    ("mha_self_causal", 5, 5, None, True),
    ("mha_cross_padded", 4, 6, [6, 2], False),
]


def mha():
    for i, (name, queries, keys, lengths, causal) in enumerate(MHA_CASES):
        torch.manual_seed(200 + i)
        module = nn.MultiheadAttention(MHA_D, MHA_HEADS, batch_first=True).eval()
        # PyTorch starts the biases at zero; random ones check that they land in the right place.
        with torch.no_grad():
            module.in_proj_bias.normal_()
            module.out_proj.bias.normal_()
        q = torch.randn(BATCH, queries, MHA_D)
        kv = q if queries == keys and name.startswith("mha_self") else torch.randn(BATCH, keys, MHA_D)
        io = {"q": q, "k": kv, "v": kv}
        padding = attn = None
        if lengths is not None:
            padding = torch.arange(keys)[None, :] >= torch.tensor(lengths)[:, None]
            io["key_padding_mask"] = padding.to(torch.float32)
        if causal:
            attn = torch.triu(torch.ones(queries, keys, dtype=torch.bool), diagonal=1)
            io["attn_mask"] = attn.to(torch.float32)
        with torch.no_grad():
            io["out"], _ = module(q, kv, kv, key_padding_mask=padding, attn_mask=attn, need_weights=False)
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, OUT / f"{name}.weights.safetensors")
        save_file({k: v.clone().contiguous() for k, v in io.items()}, OUT / f"{name}.io.safetensors")
        print(f"wrote {name}: {sorted(module.state_dict())}")


if __name__ == "__main__":
    main()
    mha()
