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
use crate::poem::Poem;

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
        *self
            .poems
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        self.picks.store(0, Ordering::Relaxed);
        Ok(count)
    }

    /// The poems served now.
    pub fn current(&self) -> Arc<[Arc<Poem>]> {
        // Held for this one statement; nothing can panic while it is held.
        Arc::clone(
            &self
                .poems
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

fn open_all(sources: &[PathBuf]) -> anyhow::Result<Arc<[Arc<Poem>]>> {
    let mut poems = Vec::new();
    for source in sources {
        if source.is_dir() {
            for path in poems_in(source)? {
                poems.push(Arc::new(Poem::open(&path)?));
            }
        } else {
            poems.push(Arc::new(Poem::open(source)?));
        }
    }
    Ok(poems.into())
}

/// The `.txt` regular files directly inside `dir`, sorted by name. Every other `.txt` entry
/// (a FIFO, a device, a link to one) is skipped with a warning that names it, at start-up and
/// at each reload, so that a file dropped from the rotation is never dropped unseen.
fn poems_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let shown = dir.display();
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read directory '{shown}'"))?
    {
        let path = entry
            .with_context(|| format!("cannot read directory '{shown}'"))?
            .path();
        if path.extension().is_none_or(|ext| ext != "txt") {
            continue;
        }
        match not_a_poem(&path) {
            None => found.push(path),
            Some(what) => warn!(file = %path.display(), what, "skipped: not a regular file"),
        }
    }
    if found.is_empty() {
        bail!("directory '{shown}' holds no poems (regular files ending in .txt)");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn names(collection: &Collection, picks: u64) -> Vec<String> {
        (0..picks)
            .map(|n| {
                collection
                    .pick(n)
                    .path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// Several poems are handed out in the order given, round and round.
    #[test]
    fn sequential_takes_the_poems_in_turn() {
        let dir = dir_with(&[("a.txt", "A"), ("b.txt", "B")]);
        let sources = [dir.path().join("b.txt"), dir.path().join("a.txt")];
        let collection = Collection::open(&sources, Order::Sequential, None).unwrap();
        assert_eq!(
            names(&collection, 5),
            ["b.txt", "a.txt", "b.txt", "a.txt", "b.txt"]
        );
    }

    /// A directory contributes its .txt files, sorted, and nothing else.
    #[test]
    fn a_directory_gives_its_txt_files_in_name_order() {
        let dir = dir_with(&[("b.txt", "B"), ("a.txt", "A"), ("README.md", "not a poem")]);
        let collection =
            Collection::open(&[dir.path().to_owned()], Order::Sequential, None).unwrap();
        assert_eq!(names(&collection, 3), ["a.txt", "b.txt", "a.txt"]);
    }

    /// A directory with no .txt file in it is an error that says so.
    #[test]
    fn a_directory_without_poems_is_refused() {
        let dir = dir_with(&[("README.md", "not a poem")]);
        let err = Collection::open(&[dir.path().to_owned()], Order::Sequential, None)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("holds no poems"), "{err:#}");
    }

    /// Random order picks among the given poems, and does not always pick the same.
    #[test]
    fn random_picks_only_given_poems_and_not_always_the_same() {
        let dir = dir_with(&[("a.txt", "A"), ("b.txt", "B"), ("c.txt", "C")]);
        let collection = Collection::open(&[dir.path().to_owned()], Order::Random, None).unwrap();
        let picked = names(&collection, 60);
        assert!(
            picked
                .iter()
                .all(|n| ["a.txt", "b.txt", "c.txt"].contains(&n.as_str()))
        );
        let distinct: std::collections::BTreeSet<_> = picked.iter().collect();
        assert!(distinct.len() > 1, "60 random picks were all {distinct:?}");
    }

    /// With a seed, random picks repeat run after run, connection by connection; another seed
    /// picks otherwise.
    #[test]
    fn a_seed_makes_random_picks_repeatable() {
        let dir = dir_with(&[("a.txt", "A"), ("b.txt", "B"), ("c.txt", "C")]);
        let open = |seed| Collection::open(&[dir.path().to_owned()], Order::Random, Some(seed));
        let first = names(&open(7).unwrap(), 40);
        assert_eq!(first, names(&open(7).unwrap(), 40));
        assert_ne!(first, names(&open(8).unwrap(), 40));
    }

    /// A reload that cannot open a poem leaves the old set in place; a later one succeeds.
    #[test]
    fn a_failed_reload_keeps_the_old_poems() {
        let dir = dir_with(&[("a.txt", "A")]);
        let path = dir.path().join("a.txt");
        let collection =
            Collection::open(std::slice::from_ref(&path), Order::Sequential, None).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(collection.reload().is_err());
        assert_eq!(names(&collection, 1), ["a.txt"]);
        std::fs::write(&path, "A again").unwrap();
        assert_eq!(collection.reload().unwrap(), 1);
    }
}
