//! The shipped poems: plain ASCII, so that the tutorial's clients, which decode every `recv`
//! on its own, get them whole at any chunk size; and each one noted in `poems/README.md`.

use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::thread;
use std::time::Instant;

use crate::common::{Binary, LIMIT, Target};

/// Every file in `poems/` but its README, in name order.
fn shipped_poems() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("poems");
    let mut poems: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read poems/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name != "README.md"))
        .collect();
    poems.sort();
    assert!(!poems.is_empty(), "no poems in {}", dir.display());
    poems
}

/// No shipped poem holds a byte outside ASCII.
#[test]
fn shipped_poems_are_plain_ascii() {
    for path in shipped_poems() {
        let bytes = std::fs::read(&path).expect("read a shipped poem");
        if let Some(at) = bytes.iter().position(|b| !b.is_ascii()) {
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            panic!(
                "{} has a non-ASCII byte 0x{:02x} at offset {at} (line {line})",
                path.display(),
                bytes[at]
            );
        }
    }
}

/// `poems/README.md` names every shipped poem, and every poem it names is shipped.
#[test]
fn poems_readme_lists_exactly_the_shipped_poems() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("poems");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("read poems/README.md");
    let listed: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect();
    let shipped: Vec<String> = shipped_poems()
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, shipped, "the table in poems/README.md against poems/");
}

/// Served with `--num-bytes 7` and with `--num-bytes 1`, every shipped poem arrives whole, and
/// every read a client makes (1024 bytes at most, as the tutorial's `sock.recv(1024)`) decodes
/// as ASCII on its own: the property the tutorial's clients rely on.
#[test]
fn every_chunk_of_a_shipped_poem_decodes_on_its_own() {
    for num_bytes in ["7", "1"] {
        thread::scope(|scope| {
            for path in shipped_poems() {
                scope.spawn(move || {
                    let expected = std::fs::read(&path).expect("read a shipped poem");
                    let server = Binary::launch(&path)
                        .args(&["--num-bytes", num_bytes, "--delay", "1ms"])
                        .start();
                    let mut client = server.connect();
                    let started = Instant::now();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        assert!(started.elapsed() < LIMIT, "no EOF within {LIMIT:?}");
                        let n = match client.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                            Err(err) => panic!("reading {}: {err}", path.display()),
                        };
                        let chunk = &buf[..n];
                        assert!(
                            chunk.is_ascii() && std::str::from_utf8(chunk).is_ok(),
                            "{} at --num-bytes {num_bytes}: a read at byte {} does not decode \
                             on its own: {chunk:?}",
                            path.display(),
                            got.len()
                        );
                        got.extend_from_slice(chunk);
                    }
                    server.assert_bytes(&got, &expected);
                });
            }
        });
    }
}
