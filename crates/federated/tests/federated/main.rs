//! kiln-federated's integration tests, one binary (each test binary links all of burn): partitions,
//! server strategies on hand-made updates, and whole rounds on MNIST.

mod partition;
mod rounds;
mod strategy;
