//! Writes fuzz seeds from the capture transcripts: `capture_frames <fixture dir> <out dir>`.
//! Each seed is one byte (where the fuzz target cuts the input) followed by ESL bytes: every
//! capture's whole FS→app stream, and every frame on its own.

use bytes::BytesMut;
use callrec::esl::FrameDecoder;
use callrec::tools::transcript::{self, Direction};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (src, out) = match args.as_slice() {
        [_, src, out] => (src, out),
        _ => return Err("usage: capture_frames <fixture dir> <out dir>".into()),
    };
    std::fs::create_dir_all(out)?;
    let mut n = 0;
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stream = transcript::stream(&std::fs::read(&path)?, Direction::FsToApp)?;
        std::fs::write(
            format!("{out}/{stem}.stream"),
            [&[0x80], &stream[..]].concat(),
        )?;
        let mut buf = BytesMut::from(&stream[..]);
        let mut dec = FrameDecoder::default();
        while let Some(f) = dec.decode_eof(&mut buf)? {
            let start = f.offset() as usize;
            let frame = &stream[start..start + f.wire_len()];
            std::fs::write(format!("{out}/{stem}.{start}"), [&[0u8], frame].concat())?;
            n += 1;
        }
    }
    eprintln!("{n} frames");
    Ok(())
}
