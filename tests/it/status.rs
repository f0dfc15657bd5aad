//! The live status page of `--metrics`: `/status.json` and `/` list the connections being
//! served, escape every name, and `/metrics` counts how late chunks leave.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Binary, InFlight, LIMIT, Target, get, poem_file, sample};

/// GETs `/status.json` and parses it.
fn status(metrics: SocketAddr) -> serde_json::Value {
    let (code, body) = get(metrics, "/status.json");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// Reads `/status.json` until it lists `count` connections, and returns it.
fn status_with(metrics: SocketAddr, count: usize, server: &Binary) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let status = status(metrics);
        if status["connections"].as_array().map(Vec::len) == Some(count) {
            return status;
        }
        assert!(
            started.elapsed() < LIMIT,
            "never {count} connections in {status:#}\nstderr:\n{}",
            server.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes sent so far to each peer, as `/status.json` lists them.
fn sent_by_peer(status: &serde_json::Value) -> BTreeMap<String, u64> {
    status["connections"]
        .as_array()
        .expect("connections is a list")
        .iter()
        .map(|row| {
            let peer = row["peer"].as_str().expect("peer is a string").to_string();
            (peer, row["bytes_sent"].as_u64().expect("bytes_sent"))
        })
        .collect()
}

/// With N clients streaming slowly, `/status.json` lists N connections with the clients'
/// own addresses, their sources counted, and the bytes sent to each grow between two reads.
#[test]
fn status_json_lists_each_streaming_client_and_its_progress() {
    // 3000 chunks of 10 bytes, 20 ms apart: a minute, far longer than the test needs.
    let poem = poem_file(&[b'x'; 30_000]);
    let server =
        Binary::launch(poem.path()).args(&["--delay", "0.02", "--metrics", "127.0.0.1:0"]).start();
    let metrics = server.metrics_addr();
    let sources: [IpAddr; 4] =
        ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.1"].map(|ip| ip.parse().unwrap());
    let clients: Vec<InFlight> =
        sources.iter().map(|&from| server.start_streaming_from(from, 10)).collect();
    let peers: BTreeSet<String> =
        clients.iter().map(|client| client.stream.local_addr().unwrap().to_string()).collect();

    let first = status_with(metrics, clients.len(), &server);
    let before = sent_by_peer(&first);
    assert_eq!(before.keys().cloned().collect::<BTreeSet<_>>(), peers, "{first:#}");
    assert_eq!(first["workers"]["busy"], 4, "{first:#}");
    assert_eq!(first["workers"]["total"], 256, "{first:#}");
    for row in first["connections"].as_array().unwrap() {
        assert_eq!(row["poem"], poem.path().display().to_string(), "{row:#}");
        assert_eq!(row["poem_bytes"], 30_000, "{row:#}");
        assert!(row["worker"].as_u64().is_some_and(|w| w < 256), "{row:#}");
    }
    let top: Vec<(String, u64)> = first["top_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["source"].as_str().unwrap().into(), s["connections"].as_u64().unwrap()))
        .collect();
    assert_eq!(top, [("127.0.0.1".into(), 3), ("127.0.0.2".into(), 1)], "{first:#}");

    // A few chunks' time later every connection has more; a loaded machine may take longer.
    let started = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(100));
        let after = sent_by_peer(&status(metrics));
        let grew = |(peer, sent): (&String, &u64)| after.get(peer).is_some_and(|n| n > sent);
        if before.iter().all(grew) {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "bytes sent did not grow for every client: {before:?}, then {after:?}"
        );
    }
    drop(clients);
}

/// Behind a balancer, a row names the client its PROXY header gave, and the balancer as `via`.
#[test]
fn behind_proxy_protocol_a_row_names_the_client_and_the_balancer() {
    let poem = poem_file(&[b'x'; 10_000]); // 50 s
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0.05", "--proxy-protocol", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    let mut balancer = server.connect();
    balancer.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n").unwrap();
    let mut first = [0u8; 10];
    balancer.read_exact(&mut first).expect("the first chunk");
    let status = status_with(metrics, 1, &server);
    let row = &status["connections"][0];
    assert_eq!(row["peer"], "203.0.113.9:51000", "{status:#}");
    assert_eq!(row["via"], balancer.local_addr().unwrap().to_string(), "{status:#}");
    assert_eq!(status["top_sources"][0]["source"], "203.0.113.9", "{status:#}");
    let (_, page) = get(metrics, "/");
    assert!(
        page.contains(&format!("203.0.113.9:51000 via {}", balancer.local_addr().unwrap())),
        "{page}"
    );
}

/// A poem whose name is a script shows as text on the page, and as its name in the JSON.
#[test]
fn a_poem_named_like_a_script_is_shown_as_text() {
    // A file name cannot hold '/', so the name's "</" is the end of a directory's name.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let inner = dir.path().join("<script>alert(1)<");
    std::fs::create_dir(&inner).unwrap();
    let path = inner.join("script>.txt");
    std::fs::write(&path, [b'y'; 10_000]).unwrap(); // 50 s
    let shown = path.display().to_string();
    assert!(shown.ends_with("<script>alert(1)</script>.txt"));

    let server =
        Binary::launch(&path).args(&["--delay", "0.05", "--metrics", "127.0.0.1:0"]).start();
    let metrics = server.metrics_addr();
    let client = server.start_streaming(10);
    let status = status_with(metrics, 1, &server);
    assert_eq!(status["poems"][0], shown, "{status:#}");
    assert_eq!(status["connections"][0]["poem"], shown, "{status:#}");

    let (code, page) = get(metrics, "/");
    assert_eq!(code, 200, "{page}");
    // Named or numbered character references, as the template engine writes them.
    let page = page.replace("&#60;", "&lt;").replace("&#62;", "&gt;");
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;.txt";
    // Once in the list of poems, once in the pool's row.
    assert_eq!(page.matches(escaped).count(), 2, "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert_eq!(page.matches("<script").count(), 1, "only the page's own script: {page}");
    drop(client);
}

/// Every paced chunk is counted in `poetry_chunk_lateness_seconds`, once.
#[test]
fn chunk_lateness_counts_every_paced_chunk() {
    // 5 chunks of 10 bytes, 20 ms apart.
    let poem = poem_file(&[b'z'; 50]);
    let server =
        Binary::launch(poem.path()).args(&["--delay", "0.02", "--metrics", "127.0.0.1:0"]).start();
    let metrics = server.metrics_addr();
    let (_, page) = get(metrics, "/metrics");
    assert_eq!(sample(&page, "poetry_chunk_lateness_seconds_count"), 0.0);
    server.fetch();
    server.fetch();
    server.wait_for_logs("connection ended", 2);
    let (code, page) = get(metrics, "/metrics");
    assert_eq!(code, 200, "{page}");
    assert_eq!(sample(&page, "poetry_chunk_lateness_seconds_count"), 10.0);
    assert_eq!(sample(&page, r#"poetry_chunk_lateness_seconds_bucket{le="+Inf"}"#), 10.0);
    let sum = sample(&page, "poetry_chunk_lateness_seconds_sum");
    assert!(sum > 0.0 && sum < 10.0 * LIMIT.as_secs_f64(), "{page}");
}
