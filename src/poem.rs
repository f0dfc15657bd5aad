//! The poem file: checked and opened once at startup, then read by every connection at its own
//! offset.
//!
//! The file is never read whole and never mapped into memory. Each connection copies from the
//! one open file into its socket at an explicit offset (`sendfile` on Linux; a `pread` into a
//! small stack buffer and a `write` for chunks of up to 512 bytes), so the server holds no
//! copy of the poem, connections never disturb each other's position, and a
//! file rewritten, truncated or deleted while it is being served cannot crash the process: a
//! deleted file stays readable through the open descriptor, and a truncated one simply ends
//! sooner.

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
            bail!(
                "poem '{shown}' is {}, not a regular file",
                describe(meta.file_type())
            );
        }
        let file = File::open(path).with_context(|| format!("cannot open poem '{shown}'"))?;
        Ok(Poem {
            file,
            path: path.to_owned(),
        })
    }

    /// The path the poem was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The poem's current size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Sends up to `max` bytes of the poem, starting at `*offset`, into `socket`, and advances
    /// `*offset` by the number sent. Returns 0 at the end of the file.
    ///
    /// The socket's write timeout applies: a client that accepts nothing for that long makes
    /// this fail with `WouldBlock`.
    pub fn send(&self, socket: &TcpStream, offset: &mut u64, max: usize) -> io::Result<usize> {
        if max <= COPY_UP_TO {
            copy(&self.file, socket, offset, &mut [0u8; COPY_UP_TO][..max])
        } else {
            sys::send(&self.file, socket, offset, max)
        }
    }
}

/// Up to this many bytes, reading into a buffer on the stack and writing it out costs less CPU
/// than `sendfile`, whose splice machinery outweighs copying a few bytes (measured with
/// `benches/run crowd`; figures in the CHANGELOG, Performance). Small, so the buffer stays
/// within the stack pages a worker touches anyway (see `connection::drain_until_closed`).
const COPY_UP_TO: usize = 512;

/// Reads at `*offset` into `buf` and writes what was read to `socket`: one `pread`, one `write`.
fn copy(file: &File, socket: &TcpStream, offset: &mut u64, buf: &mut [u8]) -> io::Result<usize> {
    let read = file.read_at(buf, *offset)?;
    if read == 0 {
        return Ok(0);
    }
    let sent = (&*socket).write(&buf[..read])?;
    *offset += sent as u64;
    Ok(sent)
}

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

#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    /// The most one `sendfile` call moves on Linux.
    const SENDFILE_MAX: usize = 0x7fff_f000;

    /// Zero-copy: the kernel moves bytes from the page cache into the socket.
    pub fn send(
        file: &File,
        socket: &TcpStream,
        offset: &mut u64,
        max: usize,
    ) -> io::Result<usize> {
        let Ok(mut off) = libc::off_t::try_from(*offset) else {
            return Ok(0); // past any offset a file can have
        };
        // SAFETY: both descriptors are open for the duration of the call (we hold `file` and
        // `socket` by reference), and `off` is a valid, exclusively borrowed off_t. With an
        // offset pointer, sendfile leaves the file's own position untouched, so connections
        // sharing the file do not interfere.
        let sent = unsafe {
            libc::sendfile(
                socket.as_raw_fd(),
                file.as_raw_fd(),
                &mut off,
                max.min(SENDFILE_MAX),
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        *offset = off as u64; // sendfile never moves the offset backwards from a valid one
        Ok(sent as usize) // not negative: checked above
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::io;
    use std::net::TcpStream;

    /// Portable fallback: copy through a buffer, 16 KiB at a time.
    pub fn send(
        file: &File,
        socket: &TcpStream,
        offset: &mut u64,
        max: usize,
    ) -> io::Result<usize> {
        let mut buf = [0u8; 16 * 1024];
        let want = max.min(buf.len());
        super::copy(file, socket, offset, &mut buf[..want])
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
        let err = format!(
            "{:#}",
            Poem::open(Path::new("no/such/poem.txt")).unwrap_err()
        );
        assert!(err.contains("cannot open poem 'no/such/poem.txt'"), "{err}");
    }
}
