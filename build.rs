//! Tells the tests which outside tools this machine lacks, so that a test that needs one is
//! reported as ignored, with the reason, in `cargo test`'s summary, instead of passing without
//! having run. Under CI (`CI` set) nothing is marked: there a missing tool fails its test,
//! since `.ci/run` installs every one.

use std::env;
use std::path::Path;

/// Each tool a test needs, and the cfg set when it is missing.
const TOOLS: [(&str, &str); 7] = [
    ("promtool", "missing_promtool"),
    ("systemd-socket-activate", "missing_socket_activate"),
    ("bash", "missing_bash"),
    ("man", "missing_man"),
    ("unshare", "missing_netns"),
    ("nft", "missing_netns"),
    ("ip", "missing_netns"),
];

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let in_ci = env::var_os("CI").is_some();
    let path = env::var_os("PATH").unwrap_or_default();
    let mut missing = Vec::new();
    for (tool, cfg) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let found = env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file());
        match found {
            // Run again if it goes away.
            Some(file) => println!("cargo::rerun-if-changed={}", file.display()),
            None => {
                // A path that does not exist makes cargo run this again at every build, so
                // a tool installed later is seen.
                println!(
                    "cargo::rerun-if-changed={}",
                    Path::new("/usr/bin").join(tool).display()
                );
                if !missing.contains(&cfg) {
                    missing.push(cfg);
                }
            }
        }
    }
    if !in_ci {
        for cfg in missing {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
