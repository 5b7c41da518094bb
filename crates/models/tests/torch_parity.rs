//! PyTorch parity of the recurrent models: weights exported from `torch.nn.{RNN, GRU, LSTM}` (multi-layer,
//! bidirectional, packed/masked) load into [`Recurrent`] and give PyTorch's outputs and final states within
//! 1e-5. The fixtures are written by `scripts/make_torch_fixtures.py`.

use burn::prelude::*;
use burn::tensor::Tolerance;
use kiln_models::recurrent::load_torch_recurrent;
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
        Self {
            bytes: std::fs::read(fixture(&format!("{case}.io.safetensors"))).unwrap(),
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
