//! Recording files as FreeSWITCH writes them: WAV (PCM s16le, 44-byte header) at the asked
//! sample rate with 1 or 2 channels, or a valid MP3 stream of silent frames.
//!
//! Left is what the caller sent (a 440 Hz tone here), right what FreeSWITCH played (880 Hz).

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wav,
    Mp3,
}

impl Format {
    /// FreeSWITCH picks the file module by extension; others are refused.
    pub fn from_path(path: &str) -> Option<Format> {
        let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "wav" => Some(Format::Wav),
            "mp3" => Some(Format::Mp3),
            _ => None,
        }
    }
}

/// Writes `ms` milliseconds of audio; returns the file size.
pub fn write(
    path: &str,
    format: Format,
    rate: u32,
    channels: u16,
    ms: u64,
) -> std::io::Result<u64> {
    write_masked(path, format, rate, channels, ms, &[])
}

/// Like [`write`], with silence during the `silent` periods (ms from the start): what
/// `uuid_record … mask` produces.
pub fn write_masked(
    path: &str,
    format: Format,
    rate: u32,
    channels: u16,
    ms: u64,
    silent: &[(u64, u64)],
) -> std::io::Result<u64> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    match format {
        Format::Wav => write_wav(path, rate, channels, ms, silent),
        Format::Mp3 => write_mp3(path, rate, channels, ms),
    }?;
    Ok(std::fs::metadata(path)?.len())
}

fn write_wav(
    path: &str,
    rate: u32,
    channels: u16,
    ms: u64,
    silent: &[(u64, u64)],
) -> std::io::Result<()> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(std::io::Error::other)?;
    let frames = ms * rate as u64 / 1000;
    for i in 0..frames {
        let t = i as f64 / rate as f64;
        let at_ms = i * 1000 / rate as u64;
        let gain = if silent.iter().any(|(a, b)| (*a..*b).contains(&at_ms)) {
            0.0
        } else {
            1.0
        };
        let left = (gain * 8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        w.write_sample(left).map_err(std::io::Error::other)?;
        if channels == 2 {
            let right = (gain * 6000.0 * (2.0 * std::f64::consts::PI * 880.0 * t).sin()) as i16;
            w.write_sample(right).map_err(std::io::Error::other)?;
        }
    }
    w.finalize().map_err(std::io::Error::other)
}

/// MPEG audio frame header fields for a sample rate: (version bits, sample-rate index,
/// bitrate index, bitrate in bit/s, samples per frame, side-info bytes for mono/stereo).
fn mpeg_params(rate: u32) -> (u8, u8, u8, u32, u32, (usize, usize)) {
    match rate {
        44100 => (0b11, 0, 0b0001, 32_000, 1152, (17, 32)),
        48000 => (0b11, 1, 0b0001, 32_000, 1152, (17, 32)),
        32000 => (0b11, 2, 0b0001, 32_000, 1152, (17, 32)),
        22050 => (0b10, 0, 0b0010, 16_000, 576, (9, 17)),
        24000 => (0b10, 1, 0b0010, 16_000, 576, (9, 17)),
        16000 => (0b10, 2, 0b0010, 16_000, 576, (9, 17)),
        11025 => (0b00, 0, 0b0010, 16_000, 576, (9, 17)),
        12000 => (0b00, 1, 0b0010, 16_000, 576, (9, 17)),
        _ => (0b00, 2, 0b0010, 16_000, 576, (9, 17)), // 8000 Hz, MPEG-2.5, as FreeSWITCH writes
    }
}

fn write_mp3(path: &str, rate: u32, channels: u16, ms: u64) -> std::io::Result<()> {
    let (version, sr_index, br_index, bitrate, spf, _side) = mpeg_params(rate);
    let coef = if version == 0b11 { 144 } else { 72 };
    let frame_len = (coef * bitrate / rate) as usize;
    let samples = ms * rate as u64 / 1000;
    let frames = samples.div_ceil(spf as u64).max(1);
    let mode = if channels == 2 { 0b00 } else { 0b11 };
    let header = [
        0xFF,
        0xE0 | version << 3 | 0b01 << 1 | 1, // Layer III, no CRC
        br_index << 4 | sr_index << 2,
        mode << 6,
    ];
    // All-zero side information and main data decode as silence.
    let mut frame = vec![0u8; frame_len];
    frame[..4].copy_from_slice(&header);
    let mut out = Vec::with_capacity(frame_len * frames as usize);
    for _ in 0..frames {
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_size_follows_the_captured_formula() {
        let dir = std::env::temp_dir().join(format!("sim-media-{}", std::process::id()));
        let p = dir.join("a/b/x.wav");
        let p = p.to_str().unwrap();
        // 5010 ms at 8000 Hz mono: 44 + 2 * 40080 = 80204 bytes, as in the capture.
        assert_eq!(write(p, Format::Wav, 8000, 1, 5010).unwrap(), 80204);
        // 4020 ms at 16000 Hz stereo: 44 + 2 * 64320 * 2 = 257324 bytes.
        assert_eq!(write(p, Format::Wav, 16000, 2, 4020).unwrap(), 257324);
        let r = hound::WavReader::open(p).unwrap();
        assert_eq!(r.spec().sample_rate, 16000);
        assert_eq!(r.spec().channels, 2);
        let m = dir.join("x.mp3");
        let size = write(m.to_str().unwrap(), Format::Mp3, 8000, 1, 5010).unwrap();
        assert_eq!(size % 144, 0);
        let bytes = std::fs::read(&m).unwrap();
        assert_eq!(&bytes[..4], &[0xFF, 0xE3, 0x28, 0xC0]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn masked_periods_are_silent() {
        let dir = std::env::temp_dir().join(format!("sim-mask-{}", std::process::id()));
        let p = dir.join("m.wav");
        let p = p.to_str().unwrap();
        write_masked(p, Format::Wav, 8000, 1, 3000, &[(1000, 2000)]).unwrap();
        let samples: Vec<i16> = hound::WavReader::open(p)
            .unwrap()
            .samples::<i16>()
            .map(|s| s.unwrap())
            .collect();
        let peak =
            |r: std::ops::Range<usize>| samples[r].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak(0..8000) > 1000);
        assert_eq!(peak(8000..16000), 0);
        assert!(peak(16000..24000) > 1000);
        std::fs::remove_dir_all(dir).ok();
    }
}
