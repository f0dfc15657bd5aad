//! The poems being served: opened from the POEM arguments at start-up, reopened on SIGHUP, and
//! picked one per connection, in turn or at random.
//!
//! Each connection holds its own `Arc` of the poem it was given, so a reload never touches
//! poems already streaming: they finish with the file they started with, while new
//! connections get the new set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use clap::ValueEnum;
use tracing::warn;

use crate::faults;
use crate::poem::{self, Poem, shown};

/// How each new connection's poem is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Order {
    /// Each connection gets the next poem, in the order given, starting over after the last.
    #[default]
    Sequential,
    /// Each connection gets a poem picked at random.
    Random,
}

impl Order {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Random => "random",
        }
    }
}

/// The poems, as a set that can be swapped whole.
pub struct Collection {
    /// The POEM arguments, files or directories, as given.
    sources: Vec<PathBuf>,
    order: Order,
    poems: RwLock<Arc<[Arc<Poem>]>>,
    /// How many poems have been picked: the next one in turn.
    picks: AtomicUsize,
    /// Where random picks start: `--seed`, so that a run can be repeated, or a fresh one.
    seed: u64,
}

impl Collection {
    /// Opens every poem named by `sources`: a file is one poem; a directory contributes its
    /// regular files whose names end in `.txt`, in name order. Fails on the first poem that
    /// cannot be opened, or if there are none.
    /// With `Order::Random`, connection number n gets the same poem in every run with the
    /// same `seed`.
    pub fn open(
        sources: &[PathBuf],
        order: Order,
        seed: Option<u64>,
    ) -> anyhow::Result<Collection> {
        Ok(Collection {
            poems: RwLock::new(open_all(sources)?),
            sources: sources.to_vec(),
            order,
            picks: AtomicUsize::new(0),
            seed: seed.unwrap_or_else(|| fastrand::u64(..)),
        })
    }

    /// The poem for connection number `connection` (counting from 0 in accept order).
    pub fn pick(&self, connection: u64) -> Arc<Poem> {
        let poems = self.current();
        let index = match self.order {
            Order::Sequential => self.picks.fetch_add(1, Ordering::Relaxed) % poems.len(),
            Order::Random => faults::seeded(self.seed, connection).usize(..poems.len()),
        };
        Arc::clone(&poems[index])
    }

    /// Opens the sources again and, if every poem opens, serves the new set from now on.
    /// On failure the old set stays. Returns how many poems are served now.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let fresh = open_all(&self.sources)?;
        let count = fresh.len();
        *self.poems.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        self.picks.store(0, Ordering::Relaxed);
        Ok(count)
    }

    /// The poems served now.
    pub fn current(&self) -> Arc<[Arc<Poem>]> {
        // Held for this one statement; nothing can panic while it is held.
        Arc::clone(&self.poems.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

fn open_all(sources: &[PathBuf]) -> anyhow::Result<Arc<[Arc<Poem>]>> {
    let mut paths = Vec::new();
    for source in sources {
        match source.is_dir() {
            true => paths.extend(poems_in(source)?),
            false => paths.push(source.clone()),
        }
    }
    let hold = poem::held(paths.len());
    paths.iter().map(|path| Ok(Arc::new(Poem::check(path, hold)?))).collect()
}

/// The `.txt` regular files directly inside `dir`, sorted by name. Every other `.txt` entry
/// (a FIFO, a device, a link to one) is skipped with a warning that names it, at start-up and
/// at each reload, so that a file dropped from the rotation is never dropped unseen.
fn poems_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let name = shown(dir);
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read directory '{name}'"))?
    {
        let path = entry.with_context(|| format!("cannot read directory '{name}'"))?.path();
        if path.extension().is_none_or(|ext| ext != "txt") {
            continue;
        }
        match not_a_poem(&path) {
            None => found.push(path),
            Some(what) => warn!(file = %shown(&path), what, "skipped: not a regular file"),
        }
    }
    if found.is_empty() {
        bail!("directory '{name}' holds no poems (regular files ending in .txt)");
    }
    found.sort();
    Ok(found)
}

/// What `path` is, if it is not a regular file (links followed): why it is no poem.
fn not_a_poem(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = match std::fs::metadata(path) {
        Ok(metadata) => metadata.file_type(),
        Err(_) => return Some("unreadable, or a link to nothing"),
    };
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}
