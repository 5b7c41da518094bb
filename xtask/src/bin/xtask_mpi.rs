//! `xtask-mpi`: xtask with MPI linked (feature `mpi`), the program each rank of `cargo xtask train --ranks
//! N` runs. Everything but the linking is xtask's own `main.rs`.

#[path = "../main.rs"]
mod xtask;

fn main() -> anyhow::Result<()> {
    xtask::main()
}
