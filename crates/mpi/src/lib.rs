//! Data-parallel training across processes and machines, over MPI.
//!
//! MPI is what HPC clusters and Slurm already run (and what Horovod builds on); burn 0.22.1's own
//! collectives are NCCL's, for CUDA only. This crate gives Kiln's learner ([`kiln_train::fit`]) an MPI
//! [`Collective`](kiln_train::Collective):
//! - [`launch`]: finding `mpirun` and the command line that starts `N` ranks of a program (on this machine
//!   or on the hosts of a hostfile), with no MPI library needed;
//! - [`world`] (feature `mpi`): joining the job a launcher (`mpirun`, `srun`) started, as an
//!   [`MpiCollective`](world::MpiCollective) the learner exchanges gradients through.

pub mod launch;
#[cfg(feature = "mpi")]
pub mod world;

pub use launch::{Launch, MpiError, launched_rank};
#[cfg(feature = "mpi")]
pub use world::MpiCollective;
