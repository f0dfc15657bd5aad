//! The peers poetry-serve is compared with, started as a user would run them: each answers
//! every connection on a port of 127.0.0.1 with the same poem, once, and closes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::procs::{Served, free_port, installed};

/// nginx's stream module, as Debian's libnginx-mod-stream installs it.
const NGINX_STREAM: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Debian's Python, which has Debian's python3-twisted (a `python3` earlier on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// The Python peers, in benches/peers.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers").join(name)
}

/// Whether nginx and its stream module are installed.
pub fn nginx_installed() -> bool {
    installed("nginx") && Path::new(NGINX_STREAM).exists()
}

/// Whether Debian's Python can import Twisted.
pub fn twisted_installed() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import twisted"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// nginx 1.22's stream module answering with `return` of `poem`, two worker processes (one
/// per core), the same listen backlog as poetry-serve; with `access_log`, a line per
/// connection written to a file in `dir`, as poetry-serve logs one to its stderr file.
pub fn nginx(dir: &Path, poem: &[u8], access_log: bool) -> Served {
    let text = std::str::from_utf8(poem).expect("a text poem for nginx");
    // nginx has no escape for `$` in a string, and `"` or `\` would need one.
    assert!(!text.contains(['$', '"', '\\']), "nginx's `return` cannot send this poem as it is");
    let port = free_port();
    let name = if access_log { "nginx-log" } else { "nginx" };
    let prefix = dir.join(name);
    std::fs::create_dir_all(&prefix).expect("a directory for nginx");
    let log = match access_log {
        true => format!(
            "log_format basic '$remote_addr [$time_local] $protocol $status $bytes_sent \
             $bytes_received $session_time';\n    access_log {}/access.log basic;",
            prefix.display()
        ),
        false => "access_log off;".to_string(),
    };
    let conf = format!(
        "load_module {NGINX_STREAM};\n\
         worker_processes 2;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         stream {{\n    {log}\n    server {{\n        listen 127.0.0.1:{port} backlog=4096;\n        \
         return \"{text}\";\n    }}\n}}\n",
        dir = prefix.display(),
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    Served::peer(
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"]),
        port,
    )
}

/// The tutorial's blocking server (`slowpoetry.py`'s loop) at `--delay 0`, sending the poem in
/// one piece, its prints going to a file in `dir` as poetry-serve's log does.
pub fn python_blocking(dir: &Path, poem: &Path, size: usize) -> Served {
    let port = free_port();
    let out = std::fs::File::create(dir.join("slowpoetry.out")).expect("a file for its prints");
    Served::peer_printing(
        Command::new(PYTHON)
            .arg(script("slowpoetry.py"))
            .args(["--port", &port.to_string(), "--delay", "0"])
            .args(["--num-bytes", &size.to_string()])
            .arg(poem),
        port,
        out.into(),
    )
}

/// The same poem on Twisted: write it and lose the connection.
pub fn twisted(poem: &Path) -> Served {
    let port = free_port();
    Served::peer(
        Command::new(PYTHON)
            .arg(script("fastpoetry.py"))
            .args(["--port", &port.to_string()])
            .arg(poem),
        port,
    )
}

/// socat, forking a process per connection that copies the file.
pub fn socat(poem: &Path) -> Served {
    let port = free_port();
    Served::peer(
        Command::new("socat").args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096"),
            &format!("FILE:{}", poem.display()),
        ]),
        port,
    )
}
