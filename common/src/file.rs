//! Reading a file a user named (`-d @FILE`, `--agents @FILE`, a scenario and
//! its `body_file`, a CA bundle) without trusting it: only regular files are
//! read, and never more than a stated size. `/dev/zero` would otherwise fill
//! memory, and a FIFO would hang the program (even a `--dry-run`) until
//! someone writes to it.

use std::io::Read as _;
use std::path::Path;

/// Why a named file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// It is a FIFO, a device, a directory or a socket.
    #[error("{path} is not a regular file ({kind})")]
    NotAFile {
        /// The path as given.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// It is larger than allowed.
    #[error("{path} is larger than the {max} bytes allowed here")]
    TooLarge {
        /// The path as given.
        path: String,
        /// The limit.
        max: u64,
    },
}

/// What a non-regular file is, for the message.
fn kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Reads the regular file at `path`, refusing anything else and anything
/// larger than `max` bytes.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let shown = || path.display().to_string();
    let io = |source| FileError::Io { path: shown(), source };
    // Checked before opening: opening a FIFO to read blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotAFile { path: shown(), kind: kind(meta.file_type()) });
    }
    if meta.len() > max {
        return Err(FileError::TooLarge { path: shown(), max });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells a file that grew since the check.
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge { path: shown(), max });
    }
    Ok(bytes)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> Result<String, FileError> {
    let bytes = read_file(path, max)?;
    String::from_utf8(bytes).map_err(|e| FileError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit() {
        let dir = std::env::temp_dir().join(format!("volley-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ten");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_file(&f, 10).unwrap(), b"0123456789");
        assert!(matches!(read_file(&f, 9), Err(FileError::TooLarge { max: 9, .. })));
        let e = read_file(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "/dev/zero is not a regular file (a device)");
        assert!(matches!(read_file(&dir, 10), Err(FileError::NotAFile { kind: "a directory", .. })));
        assert!(matches!(read_file(&dir.join("none"), 10), Err(FileError::Io { .. })));
        assert!(read_text(&f, 10).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
