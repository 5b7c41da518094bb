//! Joining the job a launcher started, as the learner's [`Collective`].

use crate::launch::MpiError;
use kiln_train::Collective;
use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::{Arc, Mutex};

/// MPI's world communicator, for [`kiln_train::fit`]. Dropping the last handle finalises MPI.
pub struct MpiCollective {
    world: SimpleCommunicator,
    /// Serialises this process's MPI calls (the learner makes them from its loop's thread and, before and
    /// after the loop, from the caller's) and holds the send buffer of the all-reduce.
    calls: Mutex<Vec<f32>>,
    /// Keeps MPI initialised; declared last, so it is dropped (`MPI_Finalize`) after the communicator.
    _universe: Universe,
}

// SAFETY: rsmpi's handles are plain MPI handles, which MPI lets any thread use once it is initialised at
// `Threading::Serialized` or above (checked in `init`); every call made through this type holds `calls`,
// so no two threads of this process are inside MPI at once.
unsafe impl Send for MpiCollective {}
// SAFETY: as for `Send`.
unsafe impl Sync for MpiCollective {}

impl MpiCollective {
    /// Initialises MPI and joins the world of the job this process was launched into (a process started
    /// alone becomes a world of one). A panic on any rank afterwards ends every rank (`MPI_Abort`), so
    /// none waits for it forever.
    pub fn init() -> Result<Arc<Self>, MpiError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| MpiError::Init("MPI is already initialised in this process".into()))?;
        if !matches!(threading, Threading::Serialized | Threading::Multiple) {
            return Err(MpiError::Init(format!(
                "this MPI offers thread level {threading:?}; Kiln's learner needs Serialized or Multiple"
            )));
        }
        let world = universe.world();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            eprintln!("a rank panicked: ending all ranks");
            SimpleCommunicator::world().abort(101);
        }));
        Ok(Arc::new(Self {
            world,
            calls: Mutex::new(Vec::new()),
            _universe: universe,
        }))
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buffer: &mut [f32]) {
        let mut send = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        send.clear();
        send.extend_from_slice(buffer);
        self.world
            .all_reduce_into(&send[..], buffer, SystemOperation::sum());
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let _calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }

    fn abort(&self, message: &str) -> ! {
        eprintln!("rank {}: {message}", self.rank());
        self.world.abort(1)
    }
}
