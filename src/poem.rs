//! One poem: its path, checked at start-up and at each reload, and its file, opened when a
//! connection needs it and shared by every connection streaming it at once.
//!
//! The file is never read whole and never mapped into memory. Each connection copies from the
//! open file into its socket at an explicit offset, a `pread` into a buffer of its own and a
//! `write`, so the server holds no copy of the poem (at most one step's buffer per
//! connection), connections never disturb each other's position, and a file rewritten,
//! truncated or deleted while it is being served cannot crash the process: a deleted file stays
//! readable through the open descriptor, and a truncated one simply ends sooner.
//!
//! A few poems (at most [`HELD`]) are held open from the moment they are checked, as a poem
//! always was. Of more, each is opened when a connection needs it and closed when the last
//! connection streaming it ends, so that the number of poems does not bound the descriptors
//! the server holds (a reload, which checks the new set before it lets go of the old one,
//! would need twice as many).

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use anyhow::Context;

/// How many poems a collection may hold open for good; more are opened as they are streamed.
pub const HELD: usize = 64;

/// Whether a collection of `count` poems holds them open for good.
pub fn held(count: usize) -> bool {
    count <= HELD
}

/// The most descriptors `count` poems hold while `workers` stream them: held for good, and
/// twice for a moment at a reload (which opens the new set before it lets go of the old); or
/// else one a poem being streamed.
pub fn descriptors(count: usize, workers: usize) -> u64 {
    match held(count) {
        true => 2 * count as u64,
        false => count.min(workers) as u64,
    }
}

/// A poem: a path that held a readable regular file when it was checked.
#[derive(Debug)]
pub struct Poem {
    path: PathBuf,
    /// The path as logs and pages show it: see [`shown`].
    shown: String,
    /// The file, held open for good.
    held: Option<Arc<File>>,
    /// The file, while some connection streams it, when it is not held.
    open: Mutex<Weak<File>>,
}

/// A poem's file, open for one connection (and shared with the others streaming it).
pub struct Opened(Arc<File>);

impl Poem {
    /// Checks that `path` is a readable regular file, and refuses anything else; keeps it
    /// open if `hold`.
    pub fn check(path: &Path, hold: bool) -> anyhow::Result<Poem> {
        let shown = shown(path);
        let file = open_regular(path).with_context(|| format!("cannot open poem '{shown}'"))?;
        let held = hold.then(|| Arc::new(file));
        Ok(Poem { path: path.to_owned(), shown, held, open: Mutex::default() })
    }

    /// The path the poem was found at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as logs and pages show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The poem's file, open: the one other connections stream, or opened afresh.
    pub fn open(&self) -> io::Result<Opened> {
        if let Some(file) = &self.held {
            return Ok(Opened(Arc::clone(file)));
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = open.upgrade() {
            return Ok(Opened(file));
        }
        let file = Arc::new(open_regular(&self.path)?);
        *open = Arc::downgrade(&file);
        Ok(Opened(file))
    }
}

impl Opened {
    /// The poem's current size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    /// Sends up to `max` bytes of the poem, starting at `*offset`, into `socket` through
    /// `buf`, and advances `*offset` by the number sent. Returns 0 at the end of the file.
    ///
    /// The socket's write timeout applies: a client that accepts nothing for that long makes
    /// this fail with `WouldBlock`.
    pub fn send(
        &self,
        socket: &TcpStream,
        offset: &mut u64,
        max: usize,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let want = max.min(buf.len());
        let read = self.0.read_at(&mut buf[..want], *offset)?;
        if read == 0 {
            return Ok(0);
        }
        let sent = (&*socket).write(&buf[..read])?;
        *offset += sent as u64;
        Ok(sent)
    }
}

/// Opens `path` for reading if it is a regular file. It is opened without blocking, then its
/// type is checked on the open file: opening a FIFO blocks until someone writes to it, and a
/// check of the path before opening could be overtaken by a rename.
fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let kind = file.metadata()?.file_type();
    match kind.is_file() {
        true => Ok(file),
        false => Err(io::Error::other(format!("it is {}, not a regular file", describe(kind)))),
    }
}

/// `path` as logs and pages show it: what Rust's `Debug` makes of it, without the quotes.
/// Control, format and separator characters (a newline, a bidi override, a zero-width space)
/// and bytes that are not UTF-8 are escaped (`\u{202e}`, `\xFF`), and so are `\` and `"`,
/// so a name can forge no log line nor field, hides nothing, and two names never look alike.
pub fn shown(path: &Path) -> String {
    let quoted = format!("{path:?}");
    quoted[1..quoted.len() - 1].to_string()
}

/// The most one `pread` and `write` move, and so the largest buffer a connection holds (at
/// most `--workers` × this in all): smaller ones cost bulk throughput (docs/design.md).
pub const LARGE: usize = 1 << 20;

/// Names a file type for an error message.
fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directories, devices and FIFOs are not poems, and a FIFO is refused without waiting for
    /// a writer.
    #[test]
    fn directories_devices_and_fifos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Poem::check(dir.path(), false).unwrap_err());
        assert!(err.contains("is a directory"), "{err}");
        let err = format!("{:#}", Poem::check(Path::new("/dev/null"), false).unwrap_err());
        assert!(err.contains("is a device"), "{err}");
        let fifo = dir.path().join("fifo.txt");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let err = format!("{:#}", Poem::check(&fifo, false).unwrap_err());
        assert!(err.contains("is a FIFO"), "{err}");
    }

    /// A poem's file is open only while a connection streams it, once for all of them.
    #[test]
    fn a_poem_holds_its_file_only_while_streamed() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let poem = Poem::check(file.path(), false).unwrap();
        let first = poem.open().unwrap();
        let second = poem.open().unwrap();
        assert!(Arc::ptr_eq(&first.0, &second.0));
        drop((first, second));
        assert!(poem.open.lock().unwrap().upgrade().is_none());
    }

    /// A name shows every character that could mislead a reader escaped, and distinct names
    /// stay distinct.
    #[test]
    fn names_are_shown_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let name = |bytes: &[u8]| shown(Path::new(std::ffi::OsStr::from_bytes(bytes)));
        assert_eq!(
            name("a\u{202e}b\u{200b}\n\u{2028}".as_bytes()),
            r"a\u{202e}b\u{200b}\n\u{2028}"
        );
        assert_ne!(name(b"\xff.txt"), name(b"\xfe.txt"));
        assert_ne!(name(b"\xff.txt"), name(br"\xff.txt"));
        assert_eq!(name(b"x bytes=999 y.txt\""), r#"x bytes=999 y.txt\""#);
    }

    /// A missing poem's error names the path.
    #[test]
    fn a_missing_file_names_its_path() {
        let err = format!("{:#}", Poem::check(Path::new("no/such/poem.txt"), false).unwrap_err());
        assert!(err.contains("cannot open poem 'no/such/poem.txt'"), "{err}");
    }
}
