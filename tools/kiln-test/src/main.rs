//! `cargo test-all [ARGS…]`: the one command that runs Kiln's whole test suite on a fresh Debian machine.
//!
//! The suite needs system packages a machine with only the Rust toolchain lacks (Mesa's software Vulkan
//! driver, which runs the wgpu backend-parity tests without a GPU; Open MPI, its headers and libclang, for
//! the data-parallel tests, which start ranks with `mpirun`). This checks each with `dpkg -s`,
//! installs the missing ones with `apt-get` where it may (as root, or through passwordless `sudo`), and
//! otherwise names each missing package and the command that installs it and stops. Then it runs
//! `cargo test --workspace --features wgpu,mpi ARGS…`, with `XDG_RUNTIME_DIR` set if it was not (wgpu asks for it),
//! and, when that passes, type-checks the CUDA build (`cargo check -p xtask --bins --features cuda`).

use std::process::{Command, ExitCode, Stdio};

/// A system package the suite needs, and why.
struct Package {
    name: &'static str,
    why: &'static str,
}

/// What the suite needs beyond the Rust toolchain.
const PACKAGES: &[Package] = &[
    Package {
        name: "mesa-vulkan-drivers",
        why: "lavapipe, the software Vulkan driver the wgpu tests run on without a GPU",
    },
    Package {
        name: "libvulkan1",
        why: "the Vulkan loader wgpu opens",
    },
    Package {
        name: "openmpi-bin",
        why: "mpirun, which starts the ranks of the data-parallel tests",
    },
    Package {
        name: "libopenmpi-dev",
        why: "MPI's library and headers, which the `mpi` feature links",
    },
    Package {
        name: "libclang-dev",
        why: "libclang, which bindgen needs to read MPI's headers",
    },
    Package {
        name: "python3-pip",
        why: "Python and pip, for the Python packages the tests read their reference files with",
    },
];

/// Python packages the tests call (import name, pip name, why).
const PYTHON_PACKAGES: &[(&str, &str, &str)] = &[(
    "tensorboard",
    "tensorboard",
    "TensorBoard's event reader, which checks the event files a run writes",
)];

/// The test command README.md gives, less this runner.
const TEST_COMMAND: &[&str] = &["test", "--workspace", "--features", "wgpu,mpi"];

fn main() -> ExitCode {
    let missing: Vec<&Package> = PACKAGES.iter().filter(|p| !installed(p.name)).collect();
    if !missing.is_empty()
        && let Err(message) = install(&missing)
    {
        eprintln!("cargo test-all: {message}");
        eprintln!("missing system packages:");
        for p in &missing {
            eprintln!("  {} ({})", p.name, p.why);
        }
        let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
        eprintln!(
            "install them with:\n  sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
            names.join(" ")
        );
        return ExitCode::FAILURE;
    }
    for (module, package, why) in PYTHON_PACKAGES {
        if let Err(message) = python_package(module, package) {
            eprintln!("cargo test-all: {message}");
            eprintln!(
                "the Python package `{package}` is missing ({why}); install it with:\n  python3 -m pip install {package}"
            );
            return ExitCode::FAILURE;
        }
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(TEST_COMMAND).args(std::env::args().skip(1));
    // Incremental caches are 2.2 GB of a 13 GB test build and speed up nothing in a clean CI clone; a
    // developer who wants them sets the variable.
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        cargo.env("CARGO_INCREMENTAL", "0");
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("kiln-test-xdg-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cargo test-all: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        cargo.env("XDG_RUNTIME_DIR", dir);
    }
    eprintln!("cargo test-all: running cargo {}", TEST_COMMAND.join(" "));
    let tested = run(&mut cargo);
    if tested != ExitCode::SUCCESS {
        return tested;
    }
    // The CUDA code (device choice, burn's DDP over several GPUs) must build even where no GPU is.
    // cubecl-cuda's LLVM bundle is downloaded by a build script that only linking needs; `DOCS_RS` tells
    // that script to skip it, as it does on docs.rs, and a type check needs no LLVM.
    let mut cuda = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cuda.args(CUDA_CHECK).env("DOCS_RS", "1");
    eprintln!("cargo test-all: running cargo {}", CUDA_CHECK.join(" "));
    run(&mut cuda)
}

/// Type-checks the CUDA build (no GPU needed).
const CUDA_CHECK: &[&str] = &["check", "-p", "xtask", "--bins", "--features", "cuda"];

/// Runs `command`, passing on its failure.
fn run(command: &mut Command) -> ExitCode {
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8)),
        Err(e) => {
            eprintln!("cargo test-all: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether Debian's package database lists `name` as installed.
fn installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

/// Installs `packages` with apt-get, as root or through passwordless sudo; says why where it cannot.
fn install(packages: &[&Package]) -> Result<(), String> {
    if !on_path("apt-get") {
        return Err("apt-get not found (not a Debian-like system)".into());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !root && !sudo {
        return Err("not root and no passwordless sudo: cannot install".into());
    }
    let names: Vec<&str> = packages.iter().map(|p| p.name).collect();
    eprintln!("cargo test-all: installing {}", names.join(" "));
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            let mut c = Command::new("sudo");
            c.arg("-n").arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c.status()
            .map_err(|e| format!("cannot run apt-get: {e}"))
            .and_then(|s| {
                s.success()
                    .then_some(())
                    .ok_or(format!("apt-get {} failed ({s})", args[0]))
            })
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&names);
    apt(&args)?;
    match packages.iter().find(|p| !installed(p.name)) {
        Some(p) => Err(format!("{} is still not installed after apt-get", p.name)),
        None => Ok(()),
    }
}

/// Makes `import module` work in `python3`, installing `package` with pip if it does not (Debian's own
/// Python refuses user installs unless told `--break-system-packages`; the tests only read files with it).
fn python_package(module: &str, package: &str) -> Result<(), String> {
    let imports = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if imports() {
        return Ok(());
    }
    eprintln!("cargo test-all: installing the Python package {package} with pip");
    for extra in [&[][..], &["--break-system-packages"][..]] {
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", package])
            .args(extra)
            .status()
            .is_ok_and(|s| s.success());
        if installed && imports() {
            return Ok(());
        }
    }
    Err(format!(
        "`python3 -m pip install {package}` did not make `import {module}` work"
    ))
}

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
