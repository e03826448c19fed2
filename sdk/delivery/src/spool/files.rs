//! The queue directory: its lock, permissions, fsync of the directory, and error messages that
//! say what to do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

const LOCK_FILE: &str = "lock";

const PROBE_FILE: &str = "probe.tmp";

/// Queue directories are 0700 and their files 0600: events name places and people's movements.
pub(super) trait Private {
    fn mode_private(&mut self) -> &mut Self;
}

impl Private for fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        self.mode(0o700);
        self
    }
}

impl Private for OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        self.mode(0o600);
        self
    }
}

/// Create (or replace) a file readable by this user only.
pub(super) fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_private()
        .open(path)
}

/// Make an existing file or directory private (a queue made by an older version was 0755/0644).
pub(super) fn make_private(path: &Path, dir: bool) {
    #[cfg(unix)]
    {
        let mode = if dir { 0o700 } else { 0o600 };
        if let Ok(m) = fs::metadata(path)
            && m.permissions().mode() & 0o777 != mode
            && let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode))
        {
            tracing::warn!("cannot restrict the permissions of {}: {e}", path.display());
        }
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
}

pub(super) fn qerr(dir: &Path, message: impl Into<String>) -> Error {
    Error::Queue {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

/// "`what` failed: …" with what to do about it.
pub(super) fn io_message(what: &str, e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::FileTooLarge | K::QuotaExceeded => format!(
            "{what} failed: the disk is full ({e}); acknowledged events are freed to make room \
             and, while the disk stays full, new events are held in memory (not durable): free \
             space on that filesystem or lower queue.max_mb"
        ),
        K::PermissionDenied | K::ReadOnlyFilesystem => format!(
            "{what} failed: not writable ({e}); give this user write permission on the directory \
             or set queue.dir to a writable directory"
        ),
        _ => format!("{what} failed: {e}; check the disk (free space, `dmesg`) and queue.dir"),
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// `read_exact`, but a short file is `Ok(false)`.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Make sure `dir` is a usable directory.
pub(super) fn prepare_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            make_private(dir, true);
            Ok(())
        }
        Ok(_) => Err(qerr(
            dir,
            "is not a directory (a file of that name exists); remove the file or set queue.dir \
             to a directory path",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode_private()
            .create(dir)
            .map_err(|e| {
                qerr(
                    dir,
                    format!(
                        "cannot create the directory ({e}); create it with write permission for \
                         this user, or set queue.dir to a writable place"
                    ),
                )
            }),
        Err(e) => Err(qerr(
            dir,
            format!(
                "cannot access the directory ({e}); check the permissions of it and its parents, \
                 or set queue.dir elsewhere"
            ),
        )),
    }
}

pub(super) fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode_private()
        .open(&path)
        .map_err(|e| qerr(dir, io_message("creating the lock file `lock`", &e)))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another process (pid {holder})")
            };
            return Err(qerr(
                dir,
                format!(
                    "is locked by {who}: another ocellus is using this queue; stop it, or give \
                     each instance its own queue.dir"
                ),
            ));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(qerr(
                dir,
                format!(
                    "cannot lock `lock` ({e}); put queue.dir on a local filesystem that supports \
                     file locks"
                ),
            ));
        }
    }
    // informational: who holds it
    if f.set_len(0).is_ok() {
        let _ = f.seek(SeekFrom::Start(0));
        let _ = write!(f, "{}", std::process::id());
    }
    Ok(f)
}

/// Create, write, fsync and remove a file, so an unusable directory is found at open.
pub(super) fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let r = (|| -> io::Result<()> {
        let mut f = private_file(&path)?;
        f.write_all(b"ocellus queue probe\n")?;
        f.sync_all()?;
        Ok(())
    })();
    let _ = fs::remove_file(&path);
    r
}

/// A full disk: the queue still opens (so its backlog can be sent and space freed), degraded.
pub(super) fn is_full(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::FileTooLarge | K::QuotaExceeded
    )
}
