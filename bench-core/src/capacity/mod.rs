//! Capacity: the highest rate a server sustains within a latency objective.
//!
//! `objective.rs` reads the objective (`p99<=1ms,errors<=0`); `judge.rs` judges each trial
//! (its guards, its percentiles' intervals from the HDR counts) and decides a rate from
//! its trials with a sequential test; `search.rs` chooses the rates (bracket, bisect,
//! verify). None of it runs anything: whoever drives the trials asks the search for the
//! next rate, runs trials on fresh servers, and hands back their measurements. The tests
//! below run the whole decision chain against a simulated server with a known capacity.

pub mod judge;
pub mod objective;
pub mod search;

pub use judge::{Guards, Judged, RateTest, RateVerdict, Trial, judge};
pub use objective::{Bound, Objective, ObjectiveError};
pub use search::{Answer, Outcome, Search, Settings, Step};

#[cfg(test)]
mod sim;
