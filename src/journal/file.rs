//! What may be at the journal path before SQLite opens it.
//!
//! SQLite opens whatever the path names: a FIFO blocks the first read forever,
//! and a file shorter than one page (a 1-byte file) counts as an empty
//! database, which the next `flowc run` would turn into a journal over the
//! user's data. So every open path checks the file first: nothing there, an
//! empty regular file, or a regular file that starts with the SQLite header.

use super::JournalError;
use std::io::Read;
use std::path::Path;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a journal path that is not a regular file (a FIFO, a directory, a
/// device) or a non-empty file that is not an SQLite database; the same for
/// its `-wal` and `-shm` companions, which SQLite opens too. Never blocks.
pub(super) fn check_journal_file(path: &Path) -> Result<(), JournalError> {
    check_regular(path)?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = Path::new(&companion);
        // The companion's content belongs to SQLite; only its type matters.
        if let Some(meta) = metadata(companion)? {
            refuse_special(companion, &meta)?;
        }
    }
    Ok(())
}

fn check_regular(path: &Path) -> Result<(), JournalError> {
    let Some(meta) = metadata(path)? else {
        return Ok(());
    };
    refuse_special(path, &meta)?;
    if meta.len() == 0 {
        return Ok(());
    }
    // A regular file: opening and reading it cannot block.
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut head))
        .map_err(|e| JournalError::Open {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if head != SQLITE_HEADER {
        return Err(JournalError::NotSqlite {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    Ok(())
}

/// `None` when nothing is at `path` (a dangling symlink included).
fn metadata(path: &Path) -> Result<Option<std::fs::Metadata>, JournalError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JournalError::Open {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

fn refuse_special(path: &Path, meta: &std::fs::Metadata) -> Result<(), JournalError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(JournalError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}
