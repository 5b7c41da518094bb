//! kiln-privacy's integration tests, one binary (each test binary links all of burn): the accountant
//! against dp-accounting, and DP-SGD's clipping, noise and equivalence with SGD.

mod accountant;
mod dp_sgd;
mod training;
