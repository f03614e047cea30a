//! The backup file: one gzip stream of JSON lines, backend-neutral.
//!
//! ```text
//! {"kind":"header","format":"wakedock-backup","format_version":1,...}
//! {"kind":"row","table":"users","row":{...}}          one per row
//! {"kind":"file","path":"jwt_secret","data":"<base64>"} one per file
//! {"kind":"end","rows":{"users":1,...},"files":2,"sha256":"<hex>"}
//! ```
//!
//! The trailer's SHA-256 covers every byte of the uncompressed lines
//! before it, so a file that was cut short (no trailer), altered (hash),
//! or has anything after the trailer is refused before anything is
//! written. gzip's own CRC catches damage to the compressed bytes.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the first line's `format` says.
pub const FORMAT_NAME: &str = "wakedock-backup";
/// The format this binary writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    /// The WakeDock that wrote it.
    pub wakedock_version: String,
    /// The newest migration applied to the database it was taken from.
    pub schema_version: String,
    /// The backend it was taken from (informational: restore works into
    /// any backend).
    pub backend: String,
    /// Unix milliseconds when the snapshot was taken.
    pub created_at: i64,
    /// Whether the JWT secret is in the file (a secret set in the config
    /// file is not: keep the config file).
    pub jwt_secret_included: bool,
}

/// The last line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trailer {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    pub files: u64,
    /// SHA-256 (hex) of every uncompressed byte before this line.
    pub sha256: String,
}

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Header(Header),
    Row {
        table: String,
        row: serde_json::Value,
    },
    File {
        /// Relative to the data directory, `/`-separated.
        path: String,
        /// Base64.
        data: String,
    },
    End(Trailer),
}

/// Why a file cannot be restored. Each says what is wrong with the file;
/// none leaves anything written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a WakeDock backup (or damaged at line {line}): {reason}")]
    Damaged { line: u64, reason: String },
    #[error(
        "the backup is incomplete: it ends after line {lines} without its closing checksum \
         (cut short while copying, or the backup did not finish)"
    )]
    Truncated { lines: u64 },
    #[error("the backup is damaged: its checksum does not match its content")]
    Checksum,
    #[error(
        "the backup was written in format version {found}, newer than this WakeDock reads \
         ({FORMAT_VERSION}): restore it with WakeDock {wakedock} or newer"
    )]
    FutureFormat { found: u32, wakedock: String },
    #[error("reading the backup: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes records, hashing what it writes, into a gzip stream.
pub struct Writer<W: Write> {
    out: flate2::write::GzEncoder<W>,
    hash: Sha256,
    rows: BTreeMap<String, u64>,
    files: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, header: &Header) -> std::io::Result<Self> {
        let mut w = Self {
            out: flate2::write::GzEncoder::new(out, flate2::Compression::new(6)),
            hash: Sha256::new(),
            rows: BTreeMap::new(),
            files: 0,
        };
        w.line(&Record::Header(header.clone()))?;
        Ok(w)
    }

    fn line(&mut self, record: &Record) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(record)?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.out.write_all(&bytes)
    }

    pub fn row(&mut self, table: &str, row: &impl Serialize) -> std::io::Result<()> {
        let row = serde_json::to_value(row)?;
        self.line(&Record::Row {
            table: table.to_string(),
            row,
        })?;
        *self.rows.entry(table.to_string()).or_default() += 1;
        Ok(())
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> std::io::Result<()> {
        use base64::Engine as _;
        self.line(&Record::File {
            path: path.to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(data),
        })?;
        self.files += 1;
        Ok(())
    }

    /// Writes the trailer and finishes the gzip stream.
    pub fn finish(mut self) -> std::io::Result<(W, Trailer)> {
        let trailer = Trailer {
            rows: std::mem::take(&mut self.rows),
            files: self.files,
            sha256: hex::encode(self.hash.clone().finalize()),
        };
        let mut bytes = serde_json::to_vec(&Record::End(trailer.clone()))?;
        bytes.push(b'\n');
        self.out.write_all(&bytes)?;
        Ok((self.out.finish()?, trailer))
    }
}

/// Reads every record of a backup in order, checking as it goes, and
/// calls `each` for the rows and files. The header is checked first (a
/// future format stops at once); the checksum and counts only at the end,
/// so a caller that writes must run this once without writing first.
pub fn read(
    input: impl std::io::Read,
    mut each: impl FnMut(&Record) -> Result<(), FormatError>,
) -> Result<(Header, Trailer), FormatError> {
    let mut reader = std::io::BufReader::new(flate2::read::GzDecoder::new(input));
    let mut hash = Sha256::new();
    let mut header: Option<Header> = None;
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut files = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                FormatError::Truncated { lines: line_no }
            } else {
                FormatError::Damaged {
                    line: line_no + 1,
                    reason: e.to_string(),
                }
            }
        })?;
        if n == 0 {
            return Err(if header.is_none() {
                FormatError::Damaged {
                    line: 1,
                    reason: "the file is empty".into(),
                }
            } else {
                FormatError::Truncated { lines: line_no }
            });
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            return Err(FormatError::Truncated { lines: line_no - 1 });
        }
        let damaged = |reason: String| FormatError::Damaged {
            line: line_no,
            reason,
        };
        if header.is_none() {
            // Read loosely first, so a newer format is reported as such
            // and not as an unknown field.
            let v: serde_json::Value =
                serde_json::from_slice(&buf).map_err(|e| damaged(e.to_string()))?;
            if v["kind"] != "header" || v["format"] != FORMAT_NAME {
                return Err(damaged(
                    "the first line is not a WakeDock backup header".into(),
                ));
            }
            let version = v["format_version"].as_u64().unwrap_or(0);
            if version > u64::from(FORMAT_VERSION) {
                return Err(FormatError::FutureFormat {
                    found: u32::try_from(version).unwrap_or(u32::MAX),
                    wakedock: v["wakedock_version"].as_str().unwrap_or("?").to_string(),
                });
            }
        }
        let record: Record = serde_json::from_slice(&buf).map_err(|e| damaged(e.to_string()))?;
        match &record {
            Record::Header(h) if header.is_none() => header = Some(h.clone()),
            Record::Header(_) => return Err(damaged("a second header".into())),
            _ if header.is_none() => unreachable!("the first line was checked"),
            Record::End(t) => {
                if hex::encode(hash.finalize()) != t.sha256 {
                    return Err(FormatError::Checksum);
                }
                if t.rows != rows || t.files != files {
                    return Err(damaged(format!(
                        "the counts do not match the content ({rows:?}, {files} files; \
                         the trailer says {:?}, {} files)",
                        t.rows, t.files
                    )));
                }
                // Nothing may follow the trailer.
                buf.clear();
                if reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| damaged(e.to_string()))?
                    != 0
                {
                    return Err(damaged("data after the closing checksum".into()));
                }
                let header = header.expect("checked above");
                return Ok((header, t.clone()));
            }
            Record::Row { table, .. } => {
                *rows.entry(table.clone()).or_default() += 1;
                each(&record)?;
            }
            Record::File { .. } => {
                files += 1;
                each(&record)?;
            }
        }
        hash.update(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            wakedock_version: "0.0.0".into(),
            schema_version: "1".into(),
            backend: "sqlite".into(),
            created_at: 1,
            jwt_secret_included: false,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        for i in 0..50 {
            w.row("t", &serde_json::json!({ "i": i })).unwrap();
        }
        w.file("f", b"bytes").unwrap();
        w.finish().unwrap().0
    }

    fn uncompressed(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
        out
    }

    fn compress(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trip_counts_every_record() {
        let mut seen = 0;
        let (h, t) = read(&sample()[..], |_| {
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(h, header());
        assert_eq!(t.rows["t"], 50);
        assert_eq!((t.files, seen), (1, 51));
    }

    #[test]
    fn truncated_damaged_and_future_files_are_refused() {
        let good = sample();
        // Cut short anywhere: compressed bytes, or whole lines.
        for cut in [good.len() / 2, good.len() - 9] {
            let e = read(&good[..cut], |_| Ok(())).unwrap_err();
            assert!(
                matches!(
                    e,
                    FormatError::Truncated { .. } | FormatError::Damaged { .. }
                ),
                "{cut}: {e}"
            );
        }
        let text = uncompressed(&good);
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        let without_end = lines[..lines.len() - 1].concat();
        let e = read(&compress(&without_end)[..], |_| Ok(())).unwrap_err();
        assert!(matches!(e, FormatError::Truncated { lines: 52 }), "{e}");
        assert!(e.to_string().contains("incomplete"), "{e}");

        // One changed value: the checksum no longer matches.
        let altered = String::from_utf8(text.clone())
            .unwrap()
            .replace("{\"i\":7}", "{\"i\":8}");
        let e = read(&compress(altered.as_bytes())[..], |_| Ok(())).unwrap_err();
        assert!(matches!(e, FormatError::Checksum), "{e}");

        // Flipped compressed bytes: gzip's CRC or the JSON catches it.
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        assert!(read(&flipped[..], |_| Ok(())).is_err());

        // Anything after the trailer.
        let mut extra = text.clone();
        extra.extend_from_slice(b"{\"kind\":\"file\",\"path\":\"x\",\"data\":\"\"}\n");
        assert!(read(&compress(&extra)[..], |_| Ok(())).is_err());

        // A newer format is named as such.
        let future = String::from_utf8(text).unwrap().replacen(
            "\"format_version\":1",
            "\"format_version\":2",
            1,
        );
        let e = read(&compress(future.as_bytes())[..], |_| Ok(())).unwrap_err();
        assert!(
            matches!(e, FormatError::FutureFormat { found: 2, .. }),
            "{e}"
        );

        // Not a backup at all.
        let e = read(&compress(b"hello\n")[..], |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("not a WakeDock backup"), "{e}");
        assert!(read(&b"plain text"[..], |_| Ok(())).is_err());
    }
}
