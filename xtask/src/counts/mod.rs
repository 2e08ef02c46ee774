//! Exact counts of what a request costs the server, for `compare --mode instructions` and
//! the default mode's screen: instructions per request under callgrind
//! (`instructions`, which drives callgrind through vgdb in `callgrind`), and the system
//! calls the server made in the same counted window, by kind, from perf's tracepoints
//! (`syscalls`).

pub mod callgrind;
pub mod instructions;
pub mod syscalls;
