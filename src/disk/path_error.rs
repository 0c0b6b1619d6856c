//! An I/O error that keeps the file it was about (jj's `PathError` and `IoResultExt`): a bare
//! "Permission denied (os error 13)" names nothing; `input secret.txt: permission denied`
//! does. The error travels inside an [`io::Error`] (its kind kept), so the `io::Result`s
//! between here and the command line carry it unchanged, and the command line prints it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O error with the path it concerns and what that path is to orch.
#[derive(Debug)]
pub struct PathError {
    /// What the path is: `input`, `output`, `prompt_file`, `result`, `state file`...
    pub role: &'static str,
    /// As the user wrote it or knows it: relative to the project root where it can be.
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.role,
            self.path.display(),
            Reason(&self.source)
        )
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl PathError {
    /// `source` as an `io::Error` that names `path`.
    pub fn wrap(role: &'static str, path: impl AsRef<Path>, source: io::Error) -> io::Error {
        PathError {
            role,
            path: path.as_ref().to_path_buf(),
            source,
        }
        .into()
    }
}

impl From<PathError> for io::Error {
    fn from(e: PathError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// What went wrong, in words a user acts on; the OS's own text for the rest.
struct Reason<'a>(&'a io::Error);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        match e.raw_os_error() {
            Some(libc::ELOOP) => write!(f, "a symlink loop (too many levels of symbolic links)"),
            Some(libc::EACCES) | Some(libc::EPERM) => write!(f, "permission denied"),
            Some(libc::ENOENT) => write!(f, "does not exist"),
            Some(libc::ENOTDIR) => write!(f, "a part of the path is not a directory"),
            Some(libc::ENAMETOOLONG) => write!(f, "the name is too long"),
            _ => write!(f, "{e}"),
        }
    }
}

/// `.context(role, path)` on an `io::Result`: the error then names the path.
pub trait IoResultExt<T> {
    fn context(self, role: &'static str, path: impl AsRef<Path>) -> Result<T, PathError>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn context(self, role: &'static str, path: impl AsRef<Path>) -> Result<T, PathError> {
        self.map_err(|source| PathError {
            role,
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

/// Whether `e` already names its path (so it is not wrapped twice).
pub fn names_a_path(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<PathError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_path_and_keeps_its_kind() {
        let r: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EACCES));
        let e: io::Error = r.context("input", "secret.txt").unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "input secret.txt: permission denied");
        assert!(names_a_path(&e));
        let lp: io::Result<()> = Err(io::Error::from_raw_os_error(libc::ELOOP));
        assert_eq!(
            lp.context("input", "a/loop").unwrap_err().to_string(),
            "input a/loop: a symlink loop (too many levels of symbolic links)"
        );
        assert!(!names_a_path(&io::Error::other("x")));
    }
}
