//! Integration tests: the real binary, driven over loopback. One test binary with a module per
//! area, sharing the helpers in `common`.

mod bad_input;
mod clients;
mod command_line;
mod common;
mod dead_peer;
mod environment;
mod faults;
mod hostile;
mod in_the_open;
mod operations;
mod poems;
mod service;
mod shutdown;
mod status;
mod streaming;
