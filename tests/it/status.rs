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

/// GETs `/timeline.json` and parses it.
fn timeline(metrics: SocketAddr) -> serde_json::Value {
    let (code, body) = get(metrics, "/timeline.json");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// Reads `/timeline.json` until `wanted` holds, and returns it.
#[track_caller]
fn timeline_where(
    metrics: SocketAddr,
    server: &Binary,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let story = || format!("last timeline: {:#}\nstderr:\n{}", last.borrow(), server.stderr());
    crate::common::eventually(what, story, || {
        let now = timeline(metrics);
        let found = wanted(&now).then(|| now.clone());
        *last.borrow_mut() = now;
        found
    })
}

/// The seconds field `key` of a lane.
fn at(lane: &serde_json::Value, key: &str) -> f64 {
    lane[key].as_f64().unwrap_or_else(|| panic!("no {key} in {lane:#}"))
}

/// With one worker, `/timeline.json` shows the blocking server's queue: a lane per client,
/// the first's marks growing as its chunks leave and ending as its client hung up, the second
/// waiting in the backlog until then, then served to the end; every chunk counted in the
/// marks. The page draws both lanes.
#[test]
fn the_timeline_shows_each_lane_its_wait_its_chunks_and_its_end() {
    // Chunks of 10 bytes, 20 ms apart: the first client's poem, in turn, lasts far longer than
    // the test; the second's 10 chunks, 0.2 s.
    let (long, short) = (poem_file(&[b'x'; 100_000]), poem_file(&[b'y'; 100]));
    let server = Binary::launch(long.path())
        .poem(short.path())
        .args(&["--workers", "1", "--delay", "0.02", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    let first = server.start_streaming(10);
    let second = server.connect();
    let lane = |t: &serde_json::Value, id: u64| -> Option<serde_json::Value> {
        t["lanes"].as_array()?.iter().find(|lane| lane["id"] == id).cloned()
    };
    let chunks = |t: &serde_json::Value| lane(t, 0).and_then(|l| l["chunks"].as_u64());
    let early = timeline_where(metrics, &server, "3 chunks in the first lane", |t| {
        chunks(t).is_some_and(|n| n >= 3)
    });
    let marks = |t: &serde_json::Value| lane(t, 0).map(|l| l["marks"].as_array().unwrap().len());
    timeline_where(metrics, &server, "the first lane's marks grown", |t| {
        chunks(t) > chunks(&early) && marks(t) > marks(&early)
    });
    let first_peer = first.stream.local_addr().unwrap().to_string();
    drop(first); // hangs up mid-poem: the worker is free for the second
    let mut fetched = String::new();
    (&second).read_to_string(&mut fetched).expect("the second client's poem");
    assert_eq!(fetched.len(), 100, "{}", server.stderr());
    let done = timeline_where(metrics, &server, "both lanes ended", |t| {
        lane(t, 1).is_some_and(|l| l["outcome"] == "complete")
    });

    let (a, b) = (lane(&done, 0).unwrap(), lane(&done, 1).unwrap());
    assert_eq!(done["connections"], 2, "{done:#}");
    assert_eq!(a["peer"], first_peer, "{done:#}");
    assert_eq!(b["peer"], second.local_addr().unwrap().to_string(), "{done:#}");
    assert_eq!((&a["worker"], &b["worker"]), (&0.into(), &0.into()), "{done:#}");
    assert_eq!(a["outcome"], "client_closed", "{done:#}");
    // The second waited in the listen backlog while the only worker served the first.
    assert!(at(&b, "arrived_s") < at(&a, "ended_s"), "{done:#}");
    assert!(at(&a, "ended_s") <= at(&b, "accepted_s"), "{done:#}");
    assert!(at(&b, "waited_s") > 0.0, "{done:#}");
    let waited = at(&b, "accepted_s") - at(&b, "arrived_s");
    assert!((waited - at(&b, "waited_s")).abs() < 0.002, "{done:#}");
    // Its chunks, each counted in a mark, in order, between the worker taking it and its end.
    assert_eq!((&b["chunks"], &b["bytes"]), (&10.into(), &100.into()), "{done:#}");
    let marks = b["marks"].as_array().unwrap();
    let times: Vec<f64> = marks.iter().map(|m| m[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{done:#}");
    assert!(at(&b, "taken_s") <= times[0], "{done:#}");
    assert!(times[times.len() - 1] <= at(&b, "ended_s"), "{done:#}");
    let counted: (u64, u64) = (marks.iter())
        .map(|m| (m[1].as_u64().unwrap(), m[2].as_u64().unwrap()))
        .fold((0, 0), |(n, b), (mn, mb)| (n + mn, b + mb));
    assert_eq!(counted, (10, 100), "{done:#}");

    let (code, page) = get(metrics, "/");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(r#"data-id="0" data-chunks=""#), "{page}");
    assert!(page.contains(r#"data-id="1" data-chunks="10" data-outcome="complete""#), "{page}");
    let (code, svg) = get(metrics, "/timeline.svg");
    assert_eq!(code, 200, "{svg}");
    assert!(svg.starts_with("<svg") && svg.contains(">client_closed<"), "{svg}");
}
