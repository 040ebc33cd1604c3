//! The MPI side of a distributed fit (the `mpi` feature; rsmpi over the system's MPI): starting
//! MPI when the binary runs under `mpirun` with more than one process, the [`Reducer`] that sums
//! statistics with one `MPI_Allreduce` of double-double pairs, and the agreement on failures.
//!
//! Only this file and `dist.rs` know MPI; the library sees a [`Reducer`].

use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

use emgpu::Error;
use emgpu::em::reduce::{Reducer, dd_add};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation, UnsafeUserOperation};
use mpi::datatype::{MutView, UserDatatype, View};
use mpi::ffi::MPI_Datatype;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Equivalence;

use super::CliError;

/// How long a rank that reached the end of the run waits for the others
/// ([`Mpi::agree_outcome`]). After the last collective call of a fit only rank 0 has work left
/// (writing the model), so a rank that has not arrived by then never will.
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// The number of processes `mpirun` (Open MPI, or a PMI launcher) started, from the
/// environment it sets; `None` when not launched that way.
pub fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// MPI for the length of the program: started when the binary runs under `mpirun` with more
/// than one process (never otherwise: a one-process run is today's run), finished (MPI_Finalize)
/// when dropped, at the end of `main`.
pub struct Mpi {
    // Fields drop in order: the reducer's MPI objects are freed before MPI_Finalize.
    reducer: MpiReducer,
    /// A communicator of its own for the agreement at the end of the run
    /// ([`Mpi::agree_outcome`]), so that it can never be matched with a collective call of the
    /// fit that another rank is still in.
    exit: SimpleCommunicator,
    /// This process's rank among the processes on its node, and their number.
    local: (usize, usize),
    _universe: mpi::environment::Universe,
}

impl Mpi {
    /// Starts MPI if launched with more than one process.
    pub fn start() -> Result<Option<Mpi>, CliError> {
        if launched_size().is_none_or(|p| p < 2) {
            return Ok(None);
        }
        let universe = mpi::initialize().ok_or_else(|| {
            CliError::error("MPI could not be initialized (was it already initialized?)")
        })?;
        let world = universe.world();
        // The processes that share this node's memory (MPI_Comm_split_type with
        // MPI_COMM_TYPE_SHARED), in world-rank order: this process's place among them.
        let node = world.split_shared(world.rank());
        let local = (node.rank() as usize, node.size() as usize);
        drop(node);
        let exit = world.duplicate();
        let reducer = MpiReducer::new(world);
        Ok(Some(Mpi {
            reducer,
            exit,
            local,
            _universe: universe,
        }))
    }

    /// This process's rank among the processes on its node, and their number.
    pub fn local_rank(&self) -> (usize, usize) {
        self.local
    }

    /// The outcome of the run, agreed on by every rank at its end: `None` when every rank
    /// succeeded, else the lowest failed rank's `(message, exit code)`.
    ///
    /// Every failure met so far was agreed on before the next collective call, so every rank
    /// arrives here. Should one not (a failure on one rank that the code did not agree on
    /// while another rank waits in a collective call: a bug, or ranks started with different
    /// programs), the ranks here wait for it [`EXIT_WAIT`] at most (a non-blocking allreduce
    /// on a communicator of its own), then print their own error, or say that a rank did not
    /// finish, and end the whole job with `MPI_Abort`: never a hang.
    pub fn agree_outcome(&self, local: Option<(String, u8)>) -> Option<(String, u8)> {
        let size = self.exit.size();
        let mine: i32 = if local.is_some() {
            self.exit.rank()
        } else {
            size
        };
        let mut lowest = size;
        let start = Instant::now();
        let arrived = mpi::request::scope(|scope| {
            let mut request = self.exit.immediate_all_reduce_into(
                scope,
                &mine,
                &mut lowest,
                SystemOperation::min(),
            );
            loop {
                match request.test() {
                    Ok(_) => return true,
                    Err(pending) => request = pending,
                }
                if start.elapsed() > EXIT_WAIT {
                    // The request stays pending: MPI_Abort ends the process before the scope.
                    self.abort(local.as_ref());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        if !arrived || lowest == size {
            return None;
        }
        Some(broadcast_failure(&self.exit, lowest, mine, local))
    }

    /// Prints this rank's error (or that another rank did not finish) and ends every rank.
    fn abort(&self, local: Option<&(String, u8)>) -> ! {
        let (message, code) = match local {
            Some((m, c)) => (m.clone(), *c),
            None => (
                format!(
                    "rank {} finished but another rank did not reach the end within {} s (it failed without telling the others, or was started with other options); ending the job",
                    self.exit.rank(),
                    EXIT_WAIT.as_secs()
                ),
                1,
            ),
        };
        super::print_error(&message);
        self.exit.abort(i32::from(code.max(1)))
    }

    /// The reducer over all the processes.
    pub fn reducer(&self) -> &MpiReducer {
        &self.reducer
    }
}

/// The `(message, exit code)` of rank `lowest` (the lowest failed rank, agreed on), sent from it
/// to every rank of `comm`; `mine` is this rank's entry in that agreement and `local` its own
/// failure, if any.
fn broadcast_failure(
    comm: &SimpleCommunicator,
    lowest: i32,
    mine: i32,
    local: Option<(String, u8)>,
) -> (String, u8) {
    let root = comm.process_at_rank(lowest);
    let (mut bytes, code) = match local.filter(|_| mine == lowest) {
        Some((m, c)) => (m.into_bytes(), c),
        None => (Vec::new(), 1),
    };
    let mut head = [bytes.len() as u64, u64::from(code)];
    root.broadcast_into(&mut head[..]);
    bytes.resize(head[0] as usize, 0);
    root.broadcast_into(&mut bytes[..]);
    (String::from_utf8_lossy(&bytes).into_owned(), head[1] as u8)
}

/// Sums over `MPI_COMM_WORLD`: each value travels as a double-double pair `(hi, lo)` (an MPI
/// contiguous type of two doubles, so that no pair is split) and pairs are added by
/// [`dd_add`] in a commutative user operation; every rank rounds `hi + lo` once.
pub struct MpiReducer {
    world: SimpleCommunicator,
    pair: UserDatatype,
    op: UnsafeUserOperation,
    /// The exit code of the last failure agreed on (forwarded with its message).
    code: std::cell::Cell<u8>,
    /// The input whose rows this rank fits: library errors about them name it.
    context: std::cell::RefCell<Option<std::path::PathBuf>>,
    /// Calls of [`Reducer::sum`] and the seconds spent in them (waiting for the other ranks
    /// included), for `EMGPU_MPI_TIMING`.
    sums: std::cell::Cell<(u64, f64)>,
}

/// `inout[i] = in[i] + inout[i]` on double-double pairs (the MPI user function).
///
/// # Safety
/// MPI calls it with `len` elements of the pair type in both buffers.
unsafe extern "C" fn dd_sum(
    invec: *mut c_void,
    inoutvec: *mut c_void,
    len: *mut c_int,
    _datatype: *mut MPI_Datatype,
) {
    // SAFETY: MPI passes two buffers of `*len` pairs of f64 (the datatype this op is used with).
    unsafe {
        let n = (*len).max(0) as usize * 2;
        let a = std::slice::from_raw_parts(invec as *const f64, n);
        let b = std::slice::from_raw_parts_mut(inoutvec as *mut f64, n);
        for (x, y) in a.chunks_exact(2).zip(b.chunks_exact_mut(2)) {
            let (hi, lo) = dd_add((x[0], x[1]), (y[0], y[1]));
            y[0] = hi;
            y[1] = lo;
        }
    }
}

impl MpiReducer {
    fn new(world: SimpleCommunicator) -> Self {
        let pair = UserDatatype::contiguous(2, &f64::equivalent_datatype());
        // SAFETY: dd_sum reads and writes exactly `len` pairs of f64, the type it is used with.
        let op = unsafe { UnsafeUserOperation::commutative(dd_sum) };
        Self {
            world,
            pair,
            op,
            code: std::cell::Cell::new(1),
            context: std::cell::RefCell::new(None),
            sums: std::cell::Cell::new((0, 0.0)),
        }
    }

    /// How many sums ran and the seconds they took (the wait for the slowest rank included).
    pub fn sum_time(&self) -> (u64, f64) {
        self.sums.get()
    }

    /// Library errors agreed on from now are about the rows of `path` (this rank's input).
    pub fn set_context(&self, path: &std::path::Path) {
        *self.context.borrow_mut() = Some(path.to_path_buf());
    }

    /// The exit code of the failure last agreed on.
    pub fn failure_code(&self) -> u8 {
        self.code.get()
    }

    /// The agreement itself: `None` on every rank when no rank has a failure; otherwise the
    /// lowest failed rank's `(message, exit code)` on every rank.
    fn agree_raw(&self, local: Option<(String, u8)>) -> Option<(String, u8)> {
        let size = self.world.size();
        let mine: i32 = if local.is_some() {
            self.world.rank()
        } else {
            size
        };
        let mut lowest = size;
        self.world
            .all_reduce_into(&mine, &mut lowest, SystemOperation::min());
        if lowest == size {
            return None;
        }
        let (message, code) = broadcast_failure(&self.world, lowest, mine, local);
        self.code.set(code);
        Some((message, code))
    }

    /// Agrees on a command-line step: `Ok` if it succeeded on every rank, else the lowest failed
    /// rank's error on all.
    pub fn agree_cli<T>(&self, local: Result<T, CliError>) -> Result<T, CliError> {
        let (value, failure) = match local {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some((e.message, e.code))),
        };
        match self.agree_raw(failure) {
            None => value.ok_or_else(|| CliError::error("agreement without a value")),
            Some((message, code)) => Err(CliError { message, code }),
        }
    }
}

impl Reducer for MpiReducer {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn sum(&self, values: &mut [f64]) -> emgpu::Result<()> {
        let start = std::time::Instant::now();
        let send: Vec<f64> = values.iter().flat_map(|&v| [v, 0.0]).collect();
        let mut recv = vec![0.0; send.len()];
        let count = values.len() as mpi::Count;
        // SAFETY: both buffers hold `count` pairs of f64, the layout of `self.pair`.
        let (sv, mut rv) = unsafe {
            (
                View::with_count_and_datatype(&send[..], count, &self.pair),
                MutView::with_count_and_datatype(&mut recv[..], count, &self.pair),
            )
        };
        self.world.all_reduce_into(&sv, &mut rv, &self.op);
        for (v, p) in values.iter_mut().zip(recv.chunks_exact(2)) {
            *v = p[0] + p[1];
        }
        let (n, t) = self.sums.get();
        self.sums.set((n + 1, t + start.elapsed().as_secs_f64()));
        Ok(())
    }
    fn agree(&self, local: emgpu::Result<()>) -> emgpu::Result<()> {
        let failure = local.err().map(|e| {
            let e = match self.context.borrow().as_deref() {
                Some(path) => super::about_file(e, path),
                None => CliError::from(e),
            };
            (e.message, e.code)
        });
        match self.agree_raw(failure) {
            None => Ok(()),
            Some((message, _)) => Err(Error::Remote(message)),
        }
    }
}
