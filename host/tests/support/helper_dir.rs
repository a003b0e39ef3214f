//! Directories for helper processes that run as another user.
//!
//! When the tests run as root, Postfix's smtp-sink (and any peer or service a test starts that
//! drops privileges) runs as `nobody`. Such a process can only use a directory whose every
//! ancestor it may search: a checkout, `CARGO_TARGET_TMPDIR` or `$TMPDIR` inside a private (0700)
//! directory is not. So every directory a helper writes or reads is made here, under a base that
//! `nobody` can reach, owned by `nobody`, and checked: a test fails with a message naming the
//! blocking directory instead of a helper failing silently (and the test timing out on retries).

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user helpers run as when the tests run as root.
pub const HELPER_USER: &str = "nobody";

/// Whether the tests run as root (then helpers drop to [`HELPER_USER`]).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The arguments that make a Postfix daemon-style helper (smtp-sink) drop to [`HELPER_USER`]
/// when the tests run as root; none otherwise.
pub fn helper_user_args() -> Vec<&'static str> {
    if running_as_root() {
        vec!["-u", HELPER_USER]
    } else {
        Vec::new()
    }
}

/// A new empty directory the helper user can write and search (removed on drop). Panics with the
/// blocking directory named when no base directory is reachable by that user.
pub fn helper_dir() -> tempfile::TempDir {
    let base = helper_base();
    let dir = tempfile::Builder::new()
        .prefix("mailwit-helper-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| {
            panic!(
                "cannot create a helper directory in {}: {e}",
                base.display()
            )
        });
    give_to_helper(dir.path());
    dir
}

/// Creates `path` (and its missing parents) inside a [`helper_dir`] for the helper user, and
/// checks that the helper can write there.
pub fn helper_subdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    give_to_helper(path);
}

/// Panics unless the helper user can search every ancestor of `dir` and write `dir` itself.
pub fn check_helper_can_write(dir: &Path) {
    if let Err(why) = helper_can_write(dir) {
        panic!(
            "{} cannot use {}: {why}. Helper processes (smtp-sink ...) run as {HELPER_USER} when the \
             tests run as root; make their directories with tests/support/helper_dir.rs",
            HELPER_USER,
            dir.display()
        );
    }
}

fn give_to_helper(dir: &Path) {
    if let Some((uid, gid)) = helper_ids() {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; chown has no other preconditions.
        let rc = unsafe { libc::chown(c.as_ptr(), uid, gid) };
        assert_eq!(
            rc,
            0,
            "chown {} to {HELPER_USER}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    check_helper_can_write(dir);
}

/// The first of `$TMPDIR`, /tmp, /var/tmp whose every ancestor the helper user may search.
fn helper_base() -> PathBuf {
    let mut tried = Vec::new();
    for base in [std::env::temp_dir(), "/tmp".into(), "/var/tmp".into()] {
        match can_search_path(&base) {
            Ok(()) => return base,
            Err(why) => tried.push(format!("{}: {why}", base.display())),
        }
    }
    panic!(
        "no directory for helper processes running as {HELPER_USER}: {}",
        tried.join("; ")
    );
}

/// (uid, gid) of the helper user when the tests run as root (otherwise helpers run as us).
fn helper_ids() -> Option<(libc::uid_t, libc::gid_t)> {
    if !running_as_root() {
        return None;
    }
    let name = CString::new(HELPER_USER).unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once, before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "user {HELPER_USER} does not exist");
    // SAFETY: non-null pointer from getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Whether the helper user has permission `bit` (4 read, 2 write, 1 search) on `path`.
fn allowed(path: &Path, bit: u32) -> Result<bool, String> {
    let Some((uid, gid)) = helper_ids() else {
        return Ok(true);
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.mode();
    let shift = if meta.uid() == uid {
        6
    } else if meta.gid() == gid {
        3
    } else {
        0
    };
    Ok(mode >> shift & bit != 0)
}

fn can_search_path(dir: &Path) -> Result<(), String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for ancestor in dir.ancestors() {
        if !allowed(ancestor, 1)? {
            return Err(format!(
                "{} (mode {:o}) is not searchable by {HELPER_USER}",
                ancestor.display(),
                std::fs::metadata(ancestor)
                    .map(|m| m.mode() & 0o7777)
                    .unwrap_or(0)
            ));
        }
    }
    Ok(())
}

fn helper_can_write(dir: &Path) -> Result<(), String> {
    can_search_path(dir)?;
    if !allowed(dir, 2)? {
        return Err(format!(
            "{} is not writable by {HELPER_USER}",
            dir.display()
        ));
    }
    Ok(())
}
