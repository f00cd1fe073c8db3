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

/// FreeSWITCH's default write buffer (`SWITCH_DEFAULT_FILE_BUFFER_LEN`), bytes per channel.
pub const DEFAULT_WRITE_BUFFER: u64 = 65_536;

/// Writes `ms` milliseconds of audio in one go, header finished; returns the file size.
#[cfg(test)]
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
    let mut f = AudioFile::create(path, format, rate, channels)?;
    f.append_to(ms * rate as u64 / 1000, silent)?;
    f.close()
}

/// A recording file as FreeSWITCH keeps it open: created with its header when the recording
/// starts (a WAV header whose sizes say 0 until the file is closed, as libsndfile leaves it),
/// audio appended as the write buffer is flushed, the header's sizes written at close. A file
/// that is never closed (the process died) keeps the zero sizes: its length is what counts.
#[derive(Debug)]
pub struct AudioFile {
    path: String,
    format: Format,
    rate: u32,
    channels: u16,
    /// Sample frames written so far.
    frames: u64,
    /// MP3 frames written so far.
    mp3_frames: u64,
}

impl AudioFile {
    pub fn create(
        path: &str,
        format: Format,
        rate: u32,
        channels: u16,
    ) -> std::io::Result<AudioFile> {
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        let header = match format {
            Format::Wav => wav_header(rate, channels, 0).to_vec(),
            Format::Mp3 => Vec::new(),
        };
        std::fs::write(path, header)?;
        Ok(AudioFile {
            path: path.to_string(),
            format,
            rate,
            channels,
            frames: 0,
            mp3_frames: 0,
        })
    }

    /// Sample frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Appends audio up to sample frame `to` (silent during `silent`, ms from the start).
    pub fn append_to(&mut self, to: u64, silent: &[(u64, u64)]) -> std::io::Result<()> {
        if to <= self.frames {
            return Ok(());
        }
        let bytes = match self.format {
            Format::Wav => wav_samples(self.rate, self.channels, self.frames, to, silent),
            Format::Mp3 => {
                // Whole MPEG frames for what has been encoded; the rest waits for more audio
                // or the close.
                let spf = mpeg_params(self.rate).4 as u64;
                let due = to / spf;
                let out = mp3_frames(
                    self.rate,
                    self.channels,
                    due.saturating_sub(self.mp3_frames),
                );
                self.mp3_frames = self.mp3_frames.max(due);
                out
            }
        };
        self.frames = to;
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        std::io::Write::write_all(&mut f, &bytes)
    }

    /// Closes the file as FreeSWITCH does at stop: the last partial MP3 frame, the WAV
    /// header's sizes. Returns the file size.
    pub fn close(mut self) -> std::io::Result<u64> {
        match self.format {
            Format::Wav => {
                use std::io::{Seek, SeekFrom, Write};
                let data = self.frames * 2 * self.channels as u64;
                let mut f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
                f.seek(SeekFrom::Start(0))?;
                f.write_all(&wav_header(self.rate, self.channels, data))?;
            }
            Format::Mp3 => {
                let spf = mpeg_params(self.rate).4 as u64;
                let due = self.frames.div_ceil(spf).max(1);
                let rest = mp3_frames(
                    self.rate,
                    self.channels,
                    due.saturating_sub(self.mp3_frames),
                );
                self.mp3_frames = due;
                let mut f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
                std::io::Write::write_all(&mut f, &rest)?;
            }
        }
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

/// A 44-byte PCM s16le WAV header for `data` bytes of audio.
fn wav_header(rate: u32, channels: u16, data: u64) -> [u8; 44] {
    let data = data.min(u32::MAX as u64 - 36) as u32;
    let block = 2 * channels;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * block as u32).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// Sample frames `from..to`: left is a 440 Hz tone, right (stereo) 880 Hz; silent in `silent`.
fn wav_samples(rate: u32, channels: u16, from: u64, to: u64, silent: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(((to - from) * 2 * channels as u64) as usize);
    for i in from..to {
        let t = i as f64 / rate as f64;
        let at_ms = i * 1000 / rate as u64;
        let gain = if silent.iter().any(|(a, b)| (*a..*b).contains(&at_ms)) {
            0.0
        } else {
            1.0
        };
        let left = (gain * 8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        out.extend_from_slice(&left.to_le_bytes());
        if channels == 2 {
            let right = (gain * 6000.0 * (2.0 * std::f64::consts::PI * 880.0 * t).sin()) as i16;
            out.extend_from_slice(&right.to_le_bytes());
        }
    }
    out
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

/// `n` silent MPEG frames at this rate.
fn mp3_frames(rate: u32, channels: u16, n: u64) -> Vec<u8> {
    let (version, sr_index, br_index, bitrate, _spf, _side) = mpeg_params(rate);
    let coef = if version == 0b11 { 144 } else { 72 };
    let frame_len = (coef * bitrate / rate) as usize;
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
    let mut out = Vec::with_capacity(frame_len * n as usize);
    for _ in 0..n {
        out.extend_from_slice(&frame);
    }
    out
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
