//! `cargo xtask train --ranks N`: starting the ranks through `mpirun`, and joining them when this process
//! is one of them (under `mpirun`/`srun`, whether `--ranks` started it or the user did).
//!
//! MPI is linked only into the `xtask-mpi` binary (feature `mpi`), so that `cargo xtask` builds on a machine
//! without MPI. `--ranks N` in a build without it first builds `xtask-mpi` (same target folder; only
//! `kiln-mpi`, `mpi-sys` and xtask itself compile) and starts that.

use anyhow::{Context, bail};
use kiln::train::DataParallel;
use kiln_mpi::Launch;
use std::ffi::OsString;
use std::path::PathBuf;

/// This process's place in a data-parallel run.
pub enum Role {
    /// Started alone: trains alone, or starts ranks.
    Alone,
    /// One of the ranks of a run; the group stays joined (MPI initialised) while this lives.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Rank(DataParallel),
}

impl Role {
    /// Joins the job when a launcher started this process as one of several ranks.
    pub fn join() -> anyhow::Result<Self> {
        let Some((rank, ranks)) = kiln_mpi::launched_rank() else {
            return Ok(Role::Alone);
        };
        join_mpi(rank, ranks)
    }

    /// The group, for a rank.
    pub fn group(&self) -> Option<&DataParallel> {
        match self {
            Role::Alone => None,
            Role::Rank(g) => Some(g),
        }
    }

    /// Ends every rank after an error on this one (otherwise the others would wait for it inside an
    /// exchange, and MPI's finalisation could wait for them).
    pub fn fail(&self, error: &anyhow::Error) {
        if let Role::Rank(g) = self {
            g.abort(&format!("error: {error:#}"));
        }
    }
}

#[cfg(feature = "mpi")]
fn join_mpi(_rank: usize, _ranks: usize) -> anyhow::Result<Role> {
    let world = kiln_mpi::MpiCollective::init()?;
    Ok(Role::Rank(DataParallel::new(world)))
}

#[cfg(not(feature = "mpi"))]
fn join_mpi(rank: usize, ranks: usize) -> anyhow::Result<Role> {
    bail!(
        "this process is rank {rank} of {ranks} under an MPI launcher, but this xtask is built without MPI: \
         launch `target/release/xtask-mpi` (built by `cargo build --release -p xtask --features mpi --bin \
         xtask-mpi`, or by `cargo xtask train --ranks {ranks}` itself) instead"
    )
}

/// Starts `ranks` ranks of this program's `train` with this process's arguments less `--ranks` and
/// `--hostfile`, and waits for them.
pub fn launch(ranks: usize, hostfile: Option<PathBuf>) -> anyhow::Result<()> {
    let program = mpi_program()?;
    let args = rank_arguments(std::env::args_os().skip(1));
    let launch = Launch {
        ranks,
        hostfile,
        threads_per_rank: None,
    };
    println!(
        "starting {ranks} ranks ({} compute thread(s) each) with mpirun: {}",
        launch.threads(),
        program.display()
    );
    launch.run(&program, &args)?;
    Ok(())
}

/// The program the ranks run: this one when it links MPI, otherwise `xtask-mpi`, built first.
fn mpi_program() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("the path of this program")?;
    if cfg!(feature = "mpi") {
        return Ok(me);
    }
    kiln_mpi::launch::find_on_path("mpirun").ok_or(kiln_mpi::MpiError::NoMpirun)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building xtask-mpi (xtask with MPI) for the ranks…");
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "--features",
            "mpi",
            "--bin",
            "xtask-mpi",
        ])
        .status()
        .context("cannot run cargo to build xtask-mpi")?;
    if !status.success() {
        bail!(
            "building xtask-mpi failed ({status}); MPI's headers and bindgen's libclang are needed: \
             sudo apt-get install -y libopenmpi-dev openmpi-bin libclang-dev"
        );
    }
    let built = me.with_file_name("xtask-mpi");
    if !built.is_file() {
        bail!(
            "cargo built xtask-mpi, but {} is not there",
            built.display()
        );
    }
    Ok(built)
}

/// `args` without `--ranks N`, `--ranks=N`, `--hostfile F` and `--hostfile=F`.
fn rank_arguments(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--ranks" || text == "--hostfile" {
            skip_value = true;
        } else if !(text.starts_with("--ranks=") || text.starts_with("--hostfile=")) {
            out.push(arg);
        }
    }
    out
}

/// A scratch run folder for a rank other than 0, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh folder for rank `rank`.
    pub fn new(rank: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("kiln-rank-{rank}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranks_get_every_argument_but_the_launch_ones() {
        let args = [
            "train",
            "--model",
            "mlp",
            "--ranks",
            "2",
            "--hostfile=h",
            "--quick",
            "--ranks=3",
            "--hostfile",
            "hosts",
            "--lines",
        ]
        .map(OsString::from);
        assert_eq!(
            rank_arguments(args.into_iter()),
            ["train", "--model", "mlp", "--quick", "--lines"].map(OsString::from)
        );
    }
}
