//! A client that vanishes without a reset (its packets silently dropped, as when a cable is
//! pulled or a NAT entry expires) frees its worker within --write-timeout, even though paced
//! chunks still fit the socket buffer. Run for real in a private network namespace, where an
//! nftables rule makes the client vanish; it needs root, `unshare` and `nft`.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{BinaryPoem, Server, require, run_command};

/// The test that runs [`vanished_client_inside_a_namespace`] in a namespace of its own.
#[test]
#[cfg_attr(
    missing_netns,
    ignore = "needs unshare, ip and nft (Debian's util-linux, iproute2 and nftables)"
)]
fn a_vanished_client_frees_its_worker_within_the_write_timeout() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root || std::env::var_os("CI").is_none(),
        "CI runs as root; this test needs root for a network namespace"
    );
    if !root {
        eprintln!("skipped: a network namespace needs root");
        return;
    }
    ["unshare", "nft", "ip"].into_iter().for_each(require);
    let exe = std::env::current_exe().expect("the test binary");
    let output = run_command(
        Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(exe)
            .args([
                "dead_peer::vanished_client_inside_a_namespace",
                "--exact",
                "--ignored",
                "--nocapture",
            ]),
    );
    let story = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{story}"); // the inner test's own figures
    assert!(output.status.success(), "{story}");
    assert!(
        story.contains("1 passed"),
        "the inner test did not run: {story}"
    );
}

/// Run only by the test above, inside a fresh network namespace (it refuses to run anywhere
/// else, since it adds a firewall rule).
#[test]
#[ignore = "run inside a network namespace by a_vanished_client_frees_its_worker_within_the_write_timeout"]
fn vanished_client_inside_a_namespace() {
    // /proc/self/net/dev lists the interfaces of this thread's own namespace.
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("list the interfaces");
    let interfaces: Vec<&str> = dev
        .lines()
        .filter_map(|line| Some(line.split_once(':')?.0.trim()))
        .collect();
    assert_eq!(interfaces, ["lo"], "not in a private network namespace");

    let poem = BinaryPoem::new(1000); // 100 chunks at 0.1 s: 10 s, far past the timeout
    let server = Server::launch(poem.path())
        .args(&["--workers", "1", "--num-bytes", "10", "--delay", "0.1"])
        .args(&["--write-timeout", "2", "--log-format", "json"])
        .start();
    let mut client = server.connect();
    let mut first = [0u8; 10];
    client.read_exact(&mut first).expect("the first chunk");
    let port = client.local_addr().unwrap().port();
    // From now on nothing reaches the client, and it acknowledges nothing: it has vanished.
    let rules = format!(
        "add table inet vanish\n\
         add chain inet vanish input {{ type filter hook input priority 0; }}\n\
         add rule inet vanish input tcp dport {port} drop\n"
    );
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), rules.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success(), "nft refused the rule");
    let vanished = Instant::now();

    server.wait_for_outcome("timed_out", 1);
    let freed = vanished.elapsed();
    eprintln!("worker freed {freed:?} after the client vanished (--write-timeout 2)");
    assert!(
        freed < Duration::from_secs(6),
        "took {freed:?} to drop the vanished client:\n{}",
        server.stderr()
    );
    // The only worker is free: the next client's poem starts.
    let next = server.start_streaming(10);
    drop(next);
}
