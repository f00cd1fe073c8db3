//! Event streams cut from capture transcripts, for benchmarks and fuzz seeds. (It reads
//! files: a helper for tests and benchmarks, not part of the protocol.)

use std::path::Path;

use bytes::BytesMut;

use crate::frame::ContentType;
use crate::parse::FrameDecoder;
use crate::transcript::{self, Direction};

/// The raw frames (header block + body) of every frame of content type `kind` in the
/// transcripts (`*.txt`) of `dir`, concatenated in file-name order, and how many there are.
pub fn frames_of_kind(dir: &Path, kind: &ContentType) -> Result<(Vec<u8>, usize), String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let mut count = 0;
    for path in names {
        let raw = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let stream = transcript::stream(&raw, Direction::FsToApp)?;
        let mut buf = BytesMut::from(&stream[..]);
        let mut dec = FrameDecoder::default();
        while let Some(f) = dec.decode_eof(&mut buf).map_err(|e| e.to_string())? {
            if &f.content_type() == kind {
                let start = f.offset() as usize;
                out.extend_from_slice(&stream[start..start + f.wire_len()]);
                count += 1;
            }
        }
    }
    Ok((out, count))
}
