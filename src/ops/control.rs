//! Changing what connections get while the server runs (`--control ADDR:PORT`): a small JSON
//! API on the bounded listener of [`super::http`].
//!
//! - `GET /faults`: the pacing and faults in force, as a script (see [`crate::script`]);
//! - `PUT /faults`: replace them with the script in the body, whole and at once: connections
//!   accepted from then on get it, those in flight keep what they had. What the script leaves
//!   out of the pacing is as the server started; what it leaves out of the faults, nobody gets;
//! - `DELETE /faults`: go back to what the server started with.
//!
//! Each answers with what is in force after it, as JSON. A body that is not a script, or a
//! script that does not check, gets 400 with one line saying why, and nothing changes.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use tracing::info;

use super::http::{self, Answer, Asked, Limits, Routes};
use crate::script::Script;
use crate::server::Handle;

/// The largest script a PUT may send: a few hundred rules.
pub const MAX_BODY: usize = 64 * 1024;

/// What one client of the control listener may hold: a test harness needs one connection, and
/// an attacker who reaches the port gets no more than a few.
pub(super) fn limits(hosts: Vec<String>) -> Limits {
    Limits {
        connections: 16,
        per_source: std::num::NonZeroU32::new(4).expect("4"),
        request_timeout: Duration::from_secs(10),
        slow_at_once: 1,
        hosts,
        max_body: MAX_BODY,
    }
}

/// Starts answering the control API on `addr` and returns where it listens (port 0 picks one).
pub fn serve(addr: SocketAddr, handle: Handle, limits: Limits) -> anyhow::Result<SocketAddr> {
    let route = move |asked: &Asked| match (asked.path.as_str(), &asked.method) {
        ("/faults", &Method::GET | &Method::HEAD) => in_force(&handle),
        ("/faults", &Method::PUT) => match change(&handle, &asked.body) {
            Ok(()) => {
                info!("faults and pacing changed");
                in_force(&handle)
            }
            Err(why) => Answer::text(400, format!("{why}\n")),
        },
        ("/faults", &Method::DELETE) => {
            handle.restore();
            info!("faults and pacing back to the start-up ones");
            in_force(&handle)
        }
        ("/faults", _) => Answer::text(405, "/faults takes GET, PUT and DELETE\n"),
        _ => Answer::text(404, "not found; the control API is /faults\n"),
    };
    http::serve(addr, Routes { quick: &[], route: Box::new(route) }, limits)
}

/// The pacing and faults in force, as a script in JSON.
fn in_force(handle: &Handle) -> Answer {
    let script = Script::of(&handle.behaviour());
    match serde_json::to_string_pretty(&script) {
        Ok(json) => {
            Answer { status: 200, content_type: "application/json", body: (json + "\n").into() }
        }
        Err(_) => Answer::text(500, "cannot write the faults\n"),
    }
}

/// Puts the script in `body` in force, or says in one line why not, changing nothing.
fn change(handle: &Handle, body: &[u8]) -> Result<(), String> {
    let script: Script = serde_json::from_slice(body).map_err(|err| format!("bad JSON: {err}"))?;
    let started = handle.config().pacing;
    let behaviour = script.behaviour(started).map_err(|mistakes| mistakes.join("; "))?;
    handle.change(behaviour).map_err(|invalid| invalid.in_script())
}
