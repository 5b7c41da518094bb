//! kiln-explain's integration tests, one binary (each test binary links all of burn): attributions on real
//! MNIST digits, and parity with Captum 0.9.

mod attributions;
mod captum_parity;
