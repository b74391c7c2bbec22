//! Event-time statistics: bucketed sliding windows, EWMA baselines, population
//! histograms and the LRU-bounded per-key state table. No clock, no I/O.

mod admission;
mod baseline;
pub(crate) mod exact;
mod population;
mod ring;
mod table;

pub use admission::Doorkeeper;
pub use baseline::Ewma;
pub use population::PopulationHistogram;
pub use ring::{RateWindow, WindowSpec, MAX_BUCKETS};
pub use table::KeyTable;
