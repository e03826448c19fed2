//! Where provisioned files live (the cache outside the git tree that `models/provision.sh` fills)
//! and where state that survives a restart is kept (the event queue).

use std::path::PathBuf;

/// The provisioning cache: `$OCELLUS_CACHE`, else `$XDG_CACHE_HOME/ocellus`, else `~/.cache/ocellus`.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(
        std::env::var_os("OCELLUS_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`cache_dir`] with the environment passed in.
pub fn cache_dir_from(
    ocellus_cache: Option<std::ffi::OsString>,
    xdg_cache: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(dir) = ocellus_cache.filter(|s| !s.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = xdg_cache.filter(|s| !s.is_empty()) {
        return PathBuf::from(dir).join("ocellus");
    }
    match home.filter(|s| !s.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("ocellus"),
        None => PathBuf::from(".cache").join("ocellus"),
    }
}

/// Where ocellus keeps state that must survive a restart (the event queue):
/// `$OCELLUS_STATE_DIR`, else `$XDG_STATE_HOME/ocellus`, else `~/.local/state/ocellus`.
pub fn state_dir() -> PathBuf {
    state_dir_from(
        std::env::var_os("OCELLUS_STATE_DIR"),
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`state_dir`] with the environment passed in.
pub fn state_dir_from(
    ocellus_state: Option<std::ffi::OsString>,
    xdg_state: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(dir) = ocellus_state.filter(|s| !s.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = xdg_state.filter(|s| !s.is_empty()) {
        return PathBuf::from(dir).join("ocellus");
    }
    match home.filter(|s| !s.is_empty()) {
        Some(home) => PathBuf::from(home)
            .join(".local")
            .join("state")
            .join("ocellus"),
        None => PathBuf::from(".local").join("state").join("ocellus"),
    }
}

/// Where converted model files are kept: `$OCELLUS_MODELS_DIR`, else `<cache>/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("OCELLUS_MODELS_DIR").filter(|s| !s.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_dir().join("models"),
    }
}

/// Where the real footage is kept: `<cache>/footage`.
pub fn footage_dir() -> PathBuf {
    cache_dir().join("footage")
}

/// The command that provisions everything, for error messages.
pub const PROVISION_COMMAND: &str = "models/provision.sh";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            cache_dir_from(some("/a"), some("/x"), some("/h")),
            PathBuf::from("/a")
        );
        assert_eq!(
            cache_dir_from(some(""), some("/x"), some("/h")),
            PathBuf::from("/x/ocellus")
        );
        assert_eq!(
            cache_dir_from(None, None, some("/h")),
            PathBuf::from("/h/.cache/ocellus")
        );
    }

    #[test]
    fn state_dir_precedence() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            state_dir_from(some("/s"), some("/x"), some("/h")),
            PathBuf::from("/s")
        );
        assert_eq!(
            state_dir_from(some(""), some("/x"), some("/h")),
            PathBuf::from("/x/ocellus")
        );
        assert_eq!(
            state_dir_from(None, some(""), some("/h")),
            PathBuf::from("/h/.local/state/ocellus")
        );
        assert_eq!(
            state_dir_from(None, None, None),
            PathBuf::from(".local/state/ocellus")
        );
    }
}
