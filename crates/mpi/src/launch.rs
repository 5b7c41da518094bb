//! Starting the ranks of a data-parallel run: finding `mpirun` and building its command line.
//!
//! `mpirun` is called rather than re-implemented: it starts the ranks on this machine or on the hosts of a
//! hostfile, wires them up and ends them all when one dies. Open MPI's and MPICH's (Hydra's) spellings are
//! both known; on a Slurm cluster the same program is started by `srun` instead (see the README).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What can go wrong in starting or joining ranks.
#[derive(Debug, thiserror::Error)]
pub enum MpiError {
    /// No `mpirun` on the `PATH`.
    #[error(
        "`mpirun` was not found on the PATH; install MPI, e.g. on Debian or Ubuntu:\n  sudo apt-get install -y \
         openmpi-bin libopenmpi-dev libclang-dev"
    )]
    NoMpirun,
    /// A number of ranks that cannot work.
    #[error("--ranks must be at least 1 (got {0})")]
    Ranks(usize),
    /// The hostfile is missing.
    #[error("hostfile {0}: no such file")]
    Hostfile(PathBuf),
    /// `mpirun` could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The launcher.
        program: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The ranks ended with a failure (mpirun has printed which rank and why).
    #[error("the {ranks} ranks ended with a failure ({status}); see the output above")]
    Failed {
        /// The number of ranks.
        ranks: usize,
        /// mpirun's exit status.
        status: std::process::ExitStatus,
    },
    /// Joining the job failed.
    #[error("MPI: {0}")]
    Init(String),
}

/// This process's rank and the number of ranks, when a launcher (`mpirun`/`mpiexec` of Open MPI or
/// MPICH, Slurm's `srun`) started it as one of several; `None` for a process started alone.
pub fn launched_rank() -> Option<(usize, usize)> {
    let var = |name: &str| std::env::var(name).ok()?.parse::<usize>().ok();
    let pairs = [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        // A job step's tasks (srun), not the batch script, which has SLURM_PROCID but no step.
        ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
    ];
    pairs
        .iter()
        .find_map(|(rank, size)| Some((var(rank)?, var(size)?)))
        .filter(|&(rank, size)| size > 1 && rank < size)
}

/// The flavour of an `mpirun`, which decides its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Open MPI's `mpirun` (Debian's `openmpi-bin`).
    OpenMpi,
    /// MPICH's Hydra `mpiexec`/`mpirun`.
    Hydra,
}

/// How to start the ranks of a run.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The number of ranks.
    pub ranks: usize,
    /// Hosts to place the ranks on (Open MPI: `host slots=N` lines; MPICH: `host:N`); none: this machine.
    pub hostfile: Option<PathBuf>,
    /// Compute threads per rank (`RAYON_NUM_THREADS`); none: the cores of this machine divided among
    /// the ranks, at least one.
    pub threads_per_rank: Option<usize>,
}

impl Launch {
    /// The threads each rank computes with.
    pub fn threads(&self) -> usize {
        self.threads_per_rank.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / self.ranks.max(1)).max(1)
        })
    }

    /// The command that starts `program args…` as [`Launch::ranks`] ranks with `mpirun` from the `PATH`.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Result<Command, MpiError> {
        let mpirun = find_on_path("mpirun").ok_or(MpiError::NoMpirun)?;
        let flavour = flavour(&mpirun);
        self.command_with(&mpirun, flavour, running_as_root(), program, args)
    }

    /// [`Launch::command`] with a given launcher and flavour.
    pub fn command_with(
        &self,
        mpirun: &Path,
        flavour: Flavour,
        as_root: bool,
        program: &Path,
        args: &[OsString],
    ) -> Result<Command, MpiError> {
        if self.ranks == 0 {
            return Err(MpiError::Ranks(self.ranks));
        }
        let mut c = Command::new(mpirun);
        c.arg("-np").arg(self.ranks.to_string());
        let threads = self.threads().to_string();
        match flavour {
            Flavour::OpenMpi => {
                if as_root {
                    c.arg("--allow-run-as-root");
                }
                match &self.hostfile {
                    Some(h) => {
                        check_hostfile(h)?;
                        c.arg("--hostfile").arg(h);
                    }
                    // On this machine: more ranks than cores is allowed (slower, never refused).
                    None => {
                        c.arg("--oversubscribe");
                    }
                }
                // Each rank's threads may use any core given to it (the default binds a rank to one).
                if self.threads() > 1 {
                    c.args(["--bind-to", "none"]);
                }
                c.args(["-x", &format!("RAYON_NUM_THREADS={threads}")]);
            }
            Flavour::Hydra => {
                if let Some(h) = &self.hostfile {
                    check_hostfile(h)?;
                    c.arg("-f").arg(h);
                }
                c.args(["-genv", "RAYON_NUM_THREADS", &threads]);
            }
        }
        c.arg(program).args(args);
        Ok(c)
    }

    /// Starts the ranks and waits for them.
    pub fn run(&self, program: &Path, args: &[OsString]) -> Result<(), MpiError> {
        let mut command = self.command(program, args)?;
        let status = command.status().map_err(|source| MpiError::Spawn {
            program: PathBuf::from(command.get_program()),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(MpiError::Failed {
                ranks: self.ranks,
                status,
            })
        }
    }
}

fn check_hostfile(path: &Path) -> Result<(), MpiError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(MpiError::Hostfile(path.to_path_buf()))
    }
}

/// `name` in a folder of the `PATH`, if there is one.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Which `mpirun` this is (Open MPI unless its version text names MPICH or Hydra).
fn flavour(mpirun: &Path) -> Flavour {
    let text = Command::new(mpirun)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    if text.contains("HYDRA") || text.contains("MPICH") {
        Flavour::Hydra
    } else {
        Flavour::OpenMpi
    }
}

/// Whether this process runs as root (Open MPI refuses to, unless told).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn open_mpi_gets_ranks_threads_and_root_permission() {
        let launch = Launch {
            ranks: 2,
            hostfile: None,
            threads_per_rank: Some(1),
        };
        let program = Path::new("/bin/prog");
        let c = launch
            .command_with(
                Path::new("mpirun"),
                Flavour::OpenMpi,
                true,
                program,
                &["train".into(), "--model".into(), "mlp".into()],
            )
            .unwrap();
        assert_eq!(
            args(&c),
            [
                "-np",
                "2",
                "--allow-run-as-root",
                "--oversubscribe",
                "-x",
                "RAYON_NUM_THREADS=1",
                "/bin/prog",
                "train",
                "--model",
                "mlp"
            ]
        );
    }

    #[test]
    fn a_hostfile_replaces_oversubscription_and_must_exist() {
        let dir = std::env::temp_dir().join(format!("kiln-mpi-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "node1 slots=2\nnode2 slots=2\n").unwrap();
        let mut launch = Launch {
            ranks: 4,
            hostfile: Some(hosts.clone()),
            threads_per_rank: Some(4),
        };
        let c = launch
            .command_with(
                Path::new("mpirun"),
                Flavour::OpenMpi,
                false,
                Path::new("p"),
                &[],
            )
            .unwrap();
        let a = args(&c);
        assert!(
            a.contains(&"--hostfile".to_string()) && !a.contains(&"--oversubscribe".to_string())
        );
        assert!(
            a.contains(&"--bind-to".to_string()) && a.contains(&"RAYON_NUM_THREADS=4".to_string())
        );
        assert!(!a.contains(&"--allow-run-as-root".to_string()));
        let hydra = launch
            .command_with(
                Path::new("mpiexec"),
                Flavour::Hydra,
                true,
                Path::new("p"),
                &[],
            )
            .unwrap();
        assert_eq!(
            args(&hydra)[2..4],
            ["-f".to_string(), hosts.display().to_string()]
        );
        launch.hostfile = Some(dir.join("missing"));
        let err = launch
            .command_with(
                Path::new("mpirun"),
                Flavour::OpenMpi,
                false,
                Path::new("p"),
                &[],
            )
            .unwrap_err();
        assert!(matches!(err, MpiError::Hostfile(_)), "{err}");
        launch.ranks = 0;
        launch.hostfile = None;
        assert!(matches!(
            launch.command_with(
                Path::new("mpirun"),
                Flavour::OpenMpi,
                false,
                Path::new("p"),
                &[]
            ),
            Err(MpiError::Ranks(0))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
