//! Reading a WAV file's duration (for recordings whose RECORD_STOP never came).
//!
//! FreeSWITCH writes the data size into the header only when it closes the file, so a file
//! whose recording was cut short can say 0 frames; the size on disk is what counts.

use std::path::Path;

/// Milliseconds of audio in a WAV file, or `None` when it is not a readable WAV.
pub fn duration_ms(path: &Path) -> Option<u64> {
    let r = hound::WavReader::open(path).ok()?;
    let spec = r.spec();
    let frame_bytes = (spec.bits_per_sample as u64).div_ceil(8) * spec.channels as u64;
    if spec.sample_rate == 0 || frame_bytes == 0 {
        return None;
    }
    let on_disk = std::fs::metadata(path).ok()?.len().saturating_sub(44) / frame_bytes;
    let frames = on_disk.max(r.duration() as u64);
    Some(frames * 1000 / spec.sample_rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_duration_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for _ in 0..(16000 * 2) {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(duration_ms(&p), Some(1000));
        let g = dir.path().join("g.wav");
        std::fs::write(&g, b"not a wav").unwrap();
        assert_eq!(duration_ms(&g), None);
        assert_eq!(duration_ms(&dir.path().join("missing.wav")), None);
    }
}
