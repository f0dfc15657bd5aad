//! Integration tests: the real binary, driven over loopback. One test binary with a module per
//! area, sharing the helpers in `common`.

mod cli;
mod clients;
mod common;
mod dead_peer;
mod environment;
mod faults;
mod hostile;
mod open;
mod operations;
mod poems;
mod service;
mod shutdown;
mod status;
mod streaming;
mod usage;
