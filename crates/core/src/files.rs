//! Writing a run's files so that a crash never leaves a half-written one: each is written to a temporary
//! name beside it and renamed over it (a rename within one folder is atomic on POSIX file systems).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under: hidden, in the same folder, with the same extension (burn's
/// recorders look at it), and unique to this process.
pub fn temporary_beside(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "file".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!(
            ".{stem}.partial-{}.{}",
            std::process::id(),
            ext.to_string_lossy()
        ),
        None => format!(".{stem}.partial-{}", std::process::id()),
    };
    path.with_file_name(name)
}

/// Runs `write` on a temporary path beside `path`, then renames the result over `path` (a failed rename
/// becomes an error through `rename_error`); on failure the temporary file is removed and `path` is left
/// as it was.
pub fn write_via_temporary<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    rename_error: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    let temporary = temporary_beside(path);
    match write(&temporary) {
        Ok(()) => std::fs::rename(&temporary, path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            rename_error(e)
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

/// Writes `contents` to `path` whole or not at all (flushed to disk before the rename).
pub fn write_atomic(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    write_via_temporary(
        path.as_ref(),
        |temporary| {
            let mut file = std::fs::File::create(temporary)?;
            file.write_all(contents.as_ref())?;
            file.sync_all()
        },
        |e| e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("kiln-core-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        write_atomic(&path, "old").unwrap();
        let failed: std::io::Result<()> = write_via_temporary(
            &path,
            |t| {
                std::fs::write(t, "half")?;
                Err(std::io::Error::other("crash"))
            },
            |e| e,
        );
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        write_atomic(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"], "no temporary file left");
        assert!(temporary_beside(&path).to_string_lossy().ends_with(".json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
