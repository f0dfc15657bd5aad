//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::Write;
use std::process::ExitCode;

use poetry_serve::{Cli, Config, LogFormat, Refusal};

fn main() -> ExitCode {
    // STAND-IN (issue 28): the container's HEALTHCHECK probe, read by hand before clap so that
    // the image's POETRY_SERVE_* variables do not count as other arguments.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, addr] = &args[..]
        && flag == "--health-check"
    {
        return match health_check(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err, ExitCode::FAILURE, None),
        };
    }
    let (cli, origins) = match Cli::parse_args() {
        Ok(parsed) => parsed,
        Err(Refusal::BadValue(line)) => {
            let json = Cli::wants_json_logs().then_some(LogFormat::Json);
            return fail(&anyhow::anyhow!(line), ExitCode::from(2), json);
        }
        Err(Refusal::Usage(err)) => err.exit(), // usage errors with clap's hints; --help; --version
    };
    if let Some(what) = cli.generate {
        return match what.write(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.into(), ExitCode::FAILURE, None),
        };
    }
    let format = cli.log_format;
    poetry_serve::init_log(format);
    let logged = Some(format);
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(refused) => {
            let line = origins.refusal(&refused);
            return fail(&anyhow::anyhow!(line), ExitCode::from(2), logged);
        }
    };
    let result = poetry_serve::run(config);
    match result {
        Ok(()) => {
            poetry_serve::flush_log();
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err, ExitCode::FAILURE, logged),
    }
}

/// Says `err` in one line on stderr and returns `code`: as a JSON log event when the logs are
/// JSON (set up here if they were not yet), so that a log shipper reads it like any other;
/// otherwise as `poetry-serve: error: …`.
fn fail(err: &anyhow::Error, code: ExitCode, logs: Option<LogFormat>) -> ExitCode {
    match logs {
        Some(LogFormat::Json) => {
            // A refused command line fails before logging is set up.
            poetry_serve::init_log(LogFormat::Json);
            poetry_serve::log_fatal(err);
            poetry_serve::flush_log();
        }
        _ => {
            poetry_serve::flush_log();
            // A closed stderr leaves nowhere to say it; the exit status still tells.
            let _ = writeln!(std::io::stderr(), "poetry-serve: error: {err:#}");
        }
    }
    code
}

/// STAND-IN (issue 28): GETs http://ADDR/healthz within 2 s in all; a 200 is healthy.
fn health_check(addr: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Read;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(2);
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let target: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("invalid address '{addr}' for '--health-check'"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, left())
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_write_timeout(Some(left()))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut buf = [0; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        stream.set_read_timeout(Some(left()))?;
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("no answer from {addr}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let status = String::from_utf8_lossy(&answer);
    let status = status.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split(' ').nth(1) == Some("200"),
        "http://{addr}/healthz answered '{status}'"
    );
    Ok(())
}
