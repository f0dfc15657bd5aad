//! The poem file: checked and opened once at startup, then read by every connection at its own
//! offset.
//!
//! The file is never read whole and never mapped into memory. Each connection copies from the
//! one open file into its socket at an explicit offset, a `pread` into a buffer of its own and
//! a `write`, so the server holds no copy of the poem (at most one step's buffer per
//! connection),
//! connections never disturb each other's position, and a file rewritten, truncated or deleted
//! while it is being served cannot crash the process: a deleted file stays readable through
//! the open descriptor, and a truncated one simply ends sooner.

use std::fs::{File, FileType};
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// An open, regular poem file.
#[derive(Debug)]
pub struct Poem {
    file: File,
    path: PathBuf,
}

impl Poem {
    /// Opens the poem at `path`, refusing anything that is not a readable regular file.
    ///
    /// The type is checked before opening, because opening a FIFO for reading blocks until
    /// some other process opens it for writing.
    pub fn open(path: &Path) -> anyhow::Result<Poem> {
        let shown = path.display();
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot open poem '{shown}'"))?;
        if !meta.is_file() {
            bail!("poem '{shown}' is {}, not a regular file", describe(meta.file_type()));
        }
        let file = File::open(path).with_context(|| format!("cannot open poem '{shown}'"))?;
        Ok(Poem { file, path: path.to_owned() })
    }

    /// The path the poem was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The poem's current size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
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
        let read = self.file.read_at(&mut buf[..want], *offset)?;
        if read == 0 {
            return Ok(0);
        }
        let sent = (&*socket).write(&buf[..read])?;
        *offset += sent as u64;
        Ok(sent)
    }
}

/// The most one `pread` and `write` move: large enough that a big poem takes few system calls.
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

    /// Directories and devices are not poems.
    #[test]
    fn directories_and_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Poem::open(dir.path()).unwrap_err());
        assert!(err.contains("is a directory"), "{err}");
        let err = format!("{:#}", Poem::open(Path::new("/dev/null")).unwrap_err());
        assert!(err.contains("is a device"), "{err}");
    }

    /// A missing poem's error names the path.
    #[test]
    fn a_missing_file_names_its_path() {
        let err = format!("{:#}", Poem::open(Path::new("no/such/poem.txt")).unwrap_err());
        assert!(err.contains("cannot open poem 'no/such/poem.txt'"), "{err}");
    }
}
