//! Reading whole files, transparently un-gzipping them.

use crate::DataError;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a file into memory, decompressing it when it is gzipped (detected from its content, not its name).
pub(crate) fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads a UTF-8 text file, gzipped or not; invalid UTF-8 is an I/O error naming the file.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    String::from_utf8(read_maybe_gzipped(path)?).map_err(|e| {
        DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}
