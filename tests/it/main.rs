//! Integration tests: the server in-process where the process adds nothing, the real binary
//! where it does (exit statuses, signals, stdout, the environment, logs), over loopback. One
//! test binary with a module per area; `tests/tools` holds the tests that need outside tools.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod clients;
mod command_line;
mod connect_faults;
mod control;
mod environment;
mod faults;
mod hostile;
mod in_the_open;
mod operations;
mod parsing;
mod poems;
mod service;
mod shutdown;
mod status;
mod streaming;
mod trace;
mod watch;
