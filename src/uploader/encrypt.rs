//! Encryption at rest: a kept recording of an account with a `recording_public_key` is
//! encrypted to that age recipient before it enters the spool; from then on its file, its
//! name (`….wav.age`) and every upload are the encrypted bytes (`application/age`).
//!
//! The plain file is read once, streamed through age into `<file>.age.part`, synced, renamed to
//! `<file>.age` and the directory synced; only once the spool holds the encrypted file does the
//! caller remove the plain one. A crash before that leaves the plain file and its journal row:
//! the next start encrypts it again from the plain file (a stale `.part` is overwritten); a
//! crash after it leaves a plain file the spool no longer names, which the start-up scan removes
//! when the spool holds its `.age` ([`plain_left_over`]).
//!
//! Invariants: memory is bounded by the copy buffer whatever the file's size; the private key
//! is never needed or held; a plain file is removed only once its encrypted twin is in the spool.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The encrypted twin of a plain file: `<file>.age`.
pub fn encrypted_path(plain: &str) -> String {
    format!("{plain}.age")
}

/// Encrypts `plain` to `recipient` (`age1…`) into `<plain>.age`; returns its size.
pub fn encrypt_file(plain: &Path, recipient: &str) -> std::io::Result<(PathBuf, u64)> {
    let to: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let out_path = PathBuf::from(encrypted_path(&plain.to_string_lossy()));
    let part = PathBuf::from(format!("{}.part", out_path.display()));
    let mut input = BufReader::with_capacity(256 * 1024, std::fs::File::open(plain)?);
    let file = std::fs::File::create(&part)?;
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&to as &dyn age::Recipient))
        .map_err(std::io::Error::other)?;
    let mut writer = encryptor.wrap_output(BufWriter::with_capacity(256 * 1024, file))?;
    std::io::copy(&mut input, &mut writer)?;
    let mut buffered = writer.finish()?;
    buffered.flush()?;
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    drop(file);
    std::fs::rename(&part, &out_path)?;
    if let Some(dir) = out_path.parent() {
        // The rename is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok((out_path, size))
}

/// A plain recording file left over by a crash after its encrypted twin entered the spool:
/// `path` ends in the format's extension and `known` (the spool's paths) holds `<path>.age`.
pub fn plain_left_over(path: &Path, known: &std::collections::HashSet<String>) -> bool {
    known.contains(&encrypted_path(&path.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_file_round_trips_through_the_recipient_and_no_part_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("r.wav");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&plain, &data).unwrap();
        let key = age::x25519::Identity::generate();
        let (out, size) = encrypt_file(&plain, &key.to_public().to_string()).unwrap();
        assert_eq!(out, dir.path().join("r.wav.age"));
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
        assert!(!dir.path().join("r.wav.age.part").exists());
        assert!(plain.exists(), "the caller removes the plain file");
        let bytes = std::fs::read(&out).unwrap();
        assert_ne!(&bytes[..], &data[..]);
        let d = age::Decryptor::new(&bytes[..]).unwrap();
        let mut r = d
            .decrypt(std::iter::once(&key as &dyn age::Identity))
            .unwrap();
        let mut back = vec![];
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_bad_recipient_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("r.wav");
        std::fs::write(&plain, b"x").unwrap();
        assert!(encrypt_file(&plain, "age1nope").is_err());
        assert!(!dir.path().join("r.wav.age").exists());
    }
}
