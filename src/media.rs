//! Reading a kept recording's audio for people: [`peaks`] decodes a WAV or MP3 file (the
//! formats callrec records) and reduces it to a waveform of `points` columns, each the lowest
//! and highest sample in its stretch of time, every channel together.
//!
//! Invariants: reads the file once, front to back, holding at most one 10 ms column per 10 ms of
//! audio (an hour is 360,000 pairs) whatever the file's size; never writes; a file that does not
//! decode is an error naming why, never a panic or an empty waveform passed off as silence.

use std::path::Path;

use serde::Serialize;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// A waveform.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peaks {
    /// How many columns (`peaks.len()`; fewer than asked for a very short file).
    pub points: usize,
    pub duration_ms: u64,
    pub sample_rate: u32,
    pub channels: usize,
    /// Per column `[lowest, highest]`, in -1.0..=1.0.
    pub peaks: Vec<[f32; 2]>,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is not there")]
    Missing,
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("{0}")]
    Decode(String),
}

fn decode_err(e: SymError) -> MediaError {
    MediaError::Decode(e.to_string())
}

/// The waveform of the audio file at `path`, in `points` columns.
pub fn peaks(path: &Path, points: usize) -> Result<Peaks, MediaError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::Missing,
        _ => MediaError::Io(e.to_string()),
    })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(decode_err)?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| MediaError::Decode("no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(decode_err)?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(8000);
    let mut channels = track.codec_params.channels.map_or(1, |c| c.count());
    // One column per 10 ms while decoding; reduced to `points` at the end.
    let mut column = (rate / 100).max(1) as usize;
    let mut cols: Vec<[f32; 2]> = Vec::new();
    let (mut lo, mut hi, mut in_col) = (0f32, 0f32, 0usize);
    let mut frames: u64 = 0;
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(decode_err(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged frame (a file cut mid-frame) is skipped, as players do.
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(decode_err(e)),
        };
        let spec = *decoded.spec();
        if frames == 0 {
            rate = spec.rate;
            channels = spec.channels.count().max(1);
            column = (rate / 100).max(1) as usize;
        }
        let b = match &mut buf {
            Some(b) if b.capacity() >= decoded.capacity() * channels => b,
            _ => buf.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        b.copy_interleaved_ref(decoded);
        for frame in b.samples().chunks(channels) {
            for &v in frame {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            in_col += 1;
            if in_col == column {
                cols.push([lo, hi]);
                (lo, hi, in_col) = (0.0, 0.0, 0);
            }
        }
        frames += (b.samples().len() / channels) as u64;
    }
    if in_col > 0 {
        cols.push([lo, hi]);
    }
    let points = points.max(1).min(cols.len().max(1));
    let mut out = Vec::with_capacity(points);
    if !cols.is_empty() {
        for i in 0..points {
            let (a, b) = (
                i * cols.len() / points,
                ((i + 1) * cols.len() / points).max(i * cols.len() / points + 1),
            );
            let (mut l, mut h) = (0f32, 0f32);
            for c in &cols[a..b.min(cols.len())] {
                l = l.min(c[0]);
                h = h.max(c[1]);
            }
            let r = |v: f32| (v.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0;
            out.push([r(l), r(h)]);
        }
    }
    Ok(Peaks {
        points: out.len(),
        duration_ms: frames * 1000 / u64::from(rate.max(1)),
        sample_rate: rate,
        channels,
        peaks: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit PCM WAV: `secs` seconds at 8 kHz, silent in the first half, a full-scale square
    /// wave in the second.
    fn wav(path: &Path, secs: u32) {
        let n = 8000 * secs;
        let mut data = Vec::new();
        for i in 0..n {
            let v: i16 = if i < n / 2 {
                0
            } else if (i / 20) % 2 == 0 {
                32767
            } else {
                -32768
            };
            data.extend_from_slice(&v.to_le_bytes());
        }
        let mut f = Vec::new();
        f.extend_from_slice(b"RIFF");
        f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        f.extend_from_slice(b"WAVEfmt ");
        f.extend_from_slice(&16u32.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&8000u32.to_le_bytes());
        f.extend_from_slice(&16000u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&16u16.to_le_bytes());
        f.extend_from_slice(b"data");
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(&data);
        std::fs::write(path, f).unwrap();
    }

    #[test]
    fn a_wav_file_gives_its_duration_and_where_it_is_loud() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        wav(&p, 4);
        let w = peaks(&p, 100).unwrap();
        assert_eq!(
            (w.points, w.duration_ms, w.sample_rate, w.channels),
            (100, 4000, 8000, 1)
        );
        assert_eq!(w.peaks[10], [0.0, 0.0], "the first half is silent");
        assert!(
            w.peaks[90][0] <= -0.99 && w.peaks[90][1] >= 0.99,
            "the second is full scale"
        );
    }

    #[test]
    fn missing_and_undecodable_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            peaks(&dir.path().join("no.wav"), 10),
            Err(MediaError::Missing)
        ));
        let junk = dir.path().join("junk.mp3");
        std::fs::write(&junk, b"this is not audio at all, not even close").unwrap();
        assert!(matches!(peaks(&junk, 10), Err(MediaError::Decode(_))));
    }
}
