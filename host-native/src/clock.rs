//! The host's two clocks: tokio's monotonic clock for every deadline, and a wall clock for records.

use std::sync::Arc;

use cxone_agent_state_core::Now;
use tokio::time::Instant;

/// Where wall-clock time comes from. The engine uses it only for timestamps in records and for what the
/// tenant says in wall time; every deadline runs on the monotonic clock, so stepping this one (NTP, a VM
/// resumed, a test) neither stalls timers nor fires them all at once.
pub trait WallClock: Send + Sync + 'static {
    /// Unix-epoch milliseconds.
    fn unix_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_ms(&self) -> u64 {
        now_ms()
    }
}

/// Unix-epoch milliseconds from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads [`Now`] for a driver: monotonic milliseconds since the driver started, and the wall clock.
#[derive(Clone)]
pub(crate) struct Clocks {
    origin: Instant,
    wall: Arc<dyn WallClock>,
}

impl Clocks {
    pub(crate) fn new(wall: Arc<dyn WallClock>) -> Self {
        Self {
            origin: Instant::now(),
            wall,
        }
    }

    pub(crate) fn now(&self) -> Now {
        Now::new(
            self.origin.elapsed().as_millis() as u64,
            self.wall.unix_ms(),
        )
    }

    /// The tokio instant of a monotonic deadline; `None` past the end of time (never wake for it).
    pub(crate) fn instant(&self, mono_ms: u64) -> Option<Instant> {
        self.origin
            .checked_add(std::time::Duration::from_millis(mono_ms))
    }
}
