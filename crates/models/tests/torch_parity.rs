//! PyTorch parity of the recurrent models: weights exported from `torch.nn.{RNN, GRU, LSTM}` (multi-layer,
//! bidirectional, packed/masked) load into [`Recurrent`] and give PyTorch's outputs and final states within
//! 1e-5; so does burn's multi-head attention with `torch.nn.MultiheadAttention`'s weights, with and without
//! padding and causal masks. The fixtures are written by `scripts/make_torch_fixtures.py`.

use burn::nn::attention::{MhaInput, MultiHeadAttentionConfig};
use burn::prelude::*;
use burn::tensor::Tolerance;
use kiln_models::recurrent::load_torch_recurrent;
use kiln_models::transformer::load_torch_mha;
use kiln_models::{CellKind, RecurrentConfig, RecurrentState};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

/// The tensors of a safetensors file by name.
struct Io {
    bytes: Vec<u8>,
}

impl Io {
    fn open(case: &str) -> Self {
        Self::file(&format!("{case}.io.safetensors"))
    }

    fn file(name: &str) -> Self {
        Self {
            bytes: std::fs::read(fixture(name)).unwrap(),
        }
    }

    fn has(&self, name: &str) -> bool {
        safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .names()
            .contains(&name)
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let view = file.tensor(name).unwrap();
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_data(TensorData::new(values, view.shape().to_vec()), device)
    }
}

fn check_case(case: &str, cell: CellKind, layers: usize, bidirectional: bool) {
    let device = Device::flex();
    let mut model = RecurrentConfig::new(cell, 3, 4)
        .with_num_layers(layers)
        .with_bidirectional(bidirectional)
        .init(&device)
        .unwrap();
    load_torch_recurrent(
        &mut model,
        &fixture(&format!("{case}.weights.safetensors")),
        "",
    )
    .unwrap();
    let io = Io::open(case);
    let x: Tensor<3> = io.tensor("x", &device);
    let [batch, steps, _] = x.dims();
    let state = RecurrentState {
        h: io.tensor("h0", &device),
        c: io.has("c0").then(|| io.tensor("c0", &device)),
    };
    let mask = io.has("lengths").then(|| {
        let lengths: Tensor<1> = io.tensor("lengths", &device);
        let lengths: Vec<f32> = lengths.into_data().try_to_vec().unwrap();
        let valid: Vec<bool> = lengths
            .iter()
            .flat_map(|&len| (0..steps).map(move |t| (t as f32) < len))
            .collect();
        Tensor::<2, Bool>::from_data(TensorData::new(valid, [batch, steps]), &device)
    });
    let (out, final_state) = model.try_forward(x, Some(state), mask).unwrap();
    let tol = Tolerance::absolute(1e-5);
    out.into_data()
        .assert_approx_eq::<f32>(&io.tensor::<3>("out", &device).into_data(), tol);
    final_state
        .h
        .into_data()
        .assert_approx_eq::<f32>(&io.tensor::<3>("hn", &device).into_data(), tol);
    if let Some(c) = final_state.c {
        c.into_data()
            .assert_approx_eq::<f32>(&io.tensor::<3>("cn", &device).into_data(), tol);
    }
}

#[test]
fn rnn_matches_torch() {
    check_case("rnn_1layer", CellKind::Rnn, 1, false);
    check_case("rnn_2layer_bi", CellKind::Rnn, 2, true);
}

#[test]
fn gru_matches_torch() {
    check_case("gru_1layer", CellKind::Gru, 1, false);
    check_case("gru_2layer_bi", CellKind::Gru, 2, true);
}

#[test]
fn lstm_matches_torch() {
    check_case("lstm_1layer", CellKind::Lstm, 1, false);
    check_case("lstm_2layer_bi", CellKind::Lstm, 2, true);
}

#[test]
fn packed_sequences_match_torch_masks() {
    check_case("lstm_2layer_bi_masked", CellKind::Lstm, 2, true);
    check_case("gru_2layer_bi_masked", CellKind::Gru, 2, true);
}

#[test]
fn weights_for_another_architecture_are_refused_with_the_reason() {
    let device = Device::flex();
    let weights = fixture("lstm_2layer_bi.weights.safetensors");
    // Another cell: GRU weights are 3·hidden rows, the file has 4·hidden.
    let mut gru = RecurrentConfig::new(CellKind::Gru, 3, 4)
        .with_num_layers(2)
        .with_bidirectional(true)
        .init(&device)
        .unwrap();
    let err = load_torch_recurrent(&mut gru, &weights, "")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lstm_2layer_bi.weights.safetensors") && err.contains("gru"),
        "{err}"
    );
    // Unidirectional: layer 1's inputs are 4 wide, not 8, and the reverse tensors have no place.
    let mut one_way = RecurrentConfig::new(CellKind::Lstm, 3, 4)
        .with_num_layers(2)
        .init(&device)
        .unwrap();
    let err = load_torch_recurrent(&mut one_way, &weights, "")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 direction(s)") && err.contains("layers.1.forward.weight_ih"),
        "{err}"
    );
    // Three layers: layer 2 is missing.
    let mut deeper = RecurrentConfig::new(CellKind::Lstm, 3, 4)
        .with_num_layers(3)
        .with_bidirectional(true)
        .init(&device)
        .unwrap();
    let err = load_torch_recurrent(&mut deeper, &weights, "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing") && err.contains("layers.2"), "{err}");
    // Not a file / not safetensors.
    let err =
        load_torch_recurrent(&mut deeper, Path::new("/nonexistent.safetensors"), "").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent.safetensors"),
        "{err}"
    );
    let io_not_weights = fixture("lstm_1layer.io.safetensors");
    let mut lstm = RecurrentConfig::new(CellKind::Lstm, 3, 4)
        .init(&device)
        .unwrap();
    assert!(load_torch_recurrent(&mut lstm, &io_not_weights, "").is_err());
}

/// burn's own `nn::Rnn`, `nn::Lstm` and `nn::Gru` (one layer) loaded with the same PyTorch weights, gate by
/// gate: they match PyTorch too, so Kiln's layers are a choice of speed and features (fused gates in
/// PyTorch's layout, stacking, masks, a bidirectional GRU), not a fix.
#[test]
fn burn_nn_rnn_lstm_and_gru_match_torch_too() {
    use burn::module::Param;
    use burn::nn::{GateController, GruConfig, LstmConfig, LstmState, RnnConfig, RnnState};
    let device = Device::flex();
    let hidden = 4;
    // Sets one gate from rows `block` of PyTorch's fused matrices (burn's Linear keeps [in, out]).
    let set = |gate: &mut GateController, weights: &Io, block: usize| {
        let rows = |name: &str| -> Tensor<2> {
            let t: Tensor<2> = weights.tensor(name, &device);
            let cols = t.dims()[1];
            t.slice([block * hidden..(block + 1) * hidden, 0..cols])
                .transpose()
        };
        let bias = |name: &str| -> Tensor<1> {
            let t: Tensor<1> = weights.tensor(name, &device);
            t.narrow(0, block * hidden, hidden)
        };
        gate.input_transform.weight = Param::from_tensor(rows("weight_ih_l0"));
        gate.hidden_transform.weight = Param::from_tensor(rows("weight_hh_l0"));
        gate.input_transform.bias = Some(Param::from_tensor(bias("bias_ih_l0")));
        gate.hidden_transform.bias = Some(Param::from_tensor(bias("bias_hh_l0")));
    };
    let tol = Tolerance::absolute(1e-5);
    let squeeze = |t: Tensor<3>| {
        let [_, b, h] = t.dims();
        t.reshape([b, h])
    };

    let weights = Io::file("rnn_1layer.weights.safetensors");
    let io = Io::open("rnn_1layer");
    let mut rnn = RnnConfig::new(3, hidden, true).init(&device);
    set(&mut rnn.gate, &weights, 0);
    let state = RnnState::new(squeeze(io.tensor("h0", &device)));
    let (out, _) = rnn.forward(io.tensor("x", &device), Some(state));
    out.into_data()
        .assert_approx_eq::<f32>(&io.tensor::<3>("out", &device).into_data(), tol);

    let weights = Io::file("lstm_1layer.weights.safetensors");
    let io = Io::open("lstm_1layer");
    let mut lstm = LstmConfig::new(3, hidden, true).init(&device);
    // PyTorch's gate order: input, forget, cell (g), output.
    set(&mut lstm.input_gate, &weights, 0);
    set(
        lstm.forget_gate.as_mut().expect("a forget gate"),
        &weights,
        1,
    );
    set(&mut lstm.cell_gate, &weights, 2);
    set(&mut lstm.output_gate, &weights, 3);
    let state = LstmState::new(
        squeeze(io.tensor("c0", &device)),
        squeeze(io.tensor("h0", &device)),
    );
    let (out, _) = lstm.forward(io.tensor("x", &device), Some(state));
    out.into_data()
        .assert_approx_eq::<f32>(&io.tensor::<3>("out", &device).into_data(), tol);

    let weights = Io::file("gru_1layer.weights.safetensors");
    let io = Io::open("gru_1layer");
    let mut gru = GruConfig::new(3, hidden, true).init(&device);
    // PyTorch's gate order: reset, update (z), new (n).
    set(&mut gru.reset_gate, &weights, 0);
    set(&mut gru.update_gate, &weights, 1);
    set(&mut gru.new_gate, &weights, 2);
    let out = gru.forward(
        io.tensor("x", &device),
        Some(squeeze(io.tensor("h0", &device))),
    );
    out.into_data()
        .assert_approx_eq::<f32>(&io.tensor::<3>("out", &device).into_data(), tol);
}

/// burn's `MultiHeadAttention` with `torch.nn.MultiheadAttention`'s weights, on the fixture's inputs and
/// masks, run both by burn's `forward` and by Kiln's fused attention (`transformer::fused::attention`, the
/// path Kiln's stacks take on flex); both outputs must equal PyTorch's within 1e-5.
fn check_mha(case: &str) {
    let device = Device::flex();
    let mut mha = MultiHeadAttentionConfig::new(8, 2).init(&device);
    load_torch_mha(
        &mut mha,
        &fixture(&format!("{case}.weights.safetensors")),
        "",
    )
    .unwrap();
    let io = Io::open(case);
    let q: Tensor<3> = io.tensor("q", &device);
    let (k, v): (Tensor<3>, Tensor<3>) = (io.tensor("k", &device), io.tensor("v", &device));
    let [batch, queries, _] = q.dims();
    let mask_pad = io.has("key_padding_mask").then(|| {
        io.tensor::<2>("key_padding_mask", &device)
            .greater_elem(0.5)
    });
    let mask_attn = io.has("attn_mask").then(|| {
        let mask = io.tensor::<2>("attn_mask", &device).greater_elem(0.5);
        let keys = mask.dims()[1];
        mask.unsqueeze::<3>().expand([batch, queries, keys])
    });
    let mut input = MhaInput::new(q.clone(), k.clone(), v.clone());
    if let Some(mask) = mask_pad.clone() {
        input = input.mask_pad(mask);
    }
    if let Some(mask) = mask_attn.clone() {
        input = input.mask_attn(mask);
    }
    let expected = io.tensor::<3>("out", &device).into_data();
    let burn_out = mha.forward(input).context;
    burn_out
        .into_data()
        .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
    let fused_out = kiln_models::transformer::fused::attention(&mha, q, k, v, mask_pad, mask_attn);
    fused_out
        .into_data()
        .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
}

#[test]
fn multi_head_attention_matches_torch_with_and_without_masks() {
    for case in [
        "mha_self",
        "mha_self_padded",
        "mha_self_causal",
        "mha_cross_padded",
    ] {
        check_mha(case);
    }
}

#[test]
fn attention_weights_of_another_size_are_refused_naming_the_tensor() {
    let device = Device::flex();
    let mut wide = MultiHeadAttentionConfig::new(16, 2).init(&device);
    let err = load_torch_mha(&mut wide, &fixture("mha_self.weights.safetensors"), "").unwrap_err();
    assert!(err.to_string().contains("in_proj_weight"), "{err}");
    assert!(err.to_string().contains("[48, 16]"), "{err}");
    let mut mha = MultiHeadAttentionConfig::new(8, 2).init(&device);
    let err =
        load_torch_mha(&mut mha, &fixture("mha_self.weights.safetensors"), "attn.").unwrap_err();
    assert!(
        err.to_string().contains("no tensor `attn.in_proj_weight`"),
        "{err}"
    );
    let err =
        load_torch_mha(&mut mha, &fixture("lstm_1layer.weights.safetensors"), "").unwrap_err();
    assert!(err.to_string().contains("in_proj_weight"), "{err}");
    assert!(load_torch_mha(&mut mha, &fixture("missing.safetensors"), "").is_err());
}
