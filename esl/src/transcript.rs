//! Reader for capture transcripts (`tests/fixtures/esl/*.txt`): marker lines
//! `### <<< FS->APP <n> bytes …` / `### >>> APP->FS <n> bytes …` each followed by exactly `n`
//! payload bytes and one extra `\n`; `### --- NOTE …` and `### === EOF …` lines carry no bytes.

/// One direction of a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    FsToApp,
    AppToFs,
}

/// One chunk: a TCP read (FS→app) or write (app→FS) as captured.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub direction: Direction,
    pub bytes: Vec<u8>,
    /// Seconds since the capture started (`t=` in the marker).
    pub at: f64,
}

/// Does this input look like a transcript rather than a raw stream?
pub fn is_transcript(input: &[u8]) -> bool {
    input.starts_with(b"### ")
}

/// Splits a transcript into its chunks, in order.
pub fn parse(input: &[u8]) -> Result<Vec<Chunk>, String> {
    let mut chunks = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let line_end = memchr::memchr(b'\n', &input[pos..])
            .map(|i| pos + i)
            .ok_or_else(|| format!("unterminated marker line at byte {pos}"))?;
        let line = std::str::from_utf8(&input[pos..line_end])
            .map_err(|_| format!("marker line at byte {pos} is not UTF-8"))?;
        pos = line_end + 1;
        let direction = if line.starts_with("### <<< FS->APP ") {
            Direction::FsToApp
        } else if line.starts_with("### >>> APP->FS ") {
            Direction::AppToFs
        } else if line.starts_with("### --- ") || line.starts_with("### === ") {
            continue;
        } else {
            return Err(format!(
                "unexpected line at byte {}: {line:?}",
                line_end - line.len()
            ));
        };
        let n: usize = line
            .get(16..)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no byte count in marker {line:?}"))?;
        let end = pos + n;
        if end + 1 > input.len() || input[end] != b'\n' {
            return Err(format!(
                "chunk at byte {pos} is not {n} bytes plus a newline"
            ));
        }
        let at = line
            .split(' ')
            .find_map(|w| w.strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        chunks.push(Chunk {
            direction,
            bytes: input[pos..end].to_vec(),
            at,
        });
        pos = end + 1;
    }
    Ok(chunks)
}

/// The bytes of one direction, concatenated: the stream as the peer saw it.
pub fn stream(input: &[u8], direction: Direction) -> Result<Vec<u8>, String> {
    Ok(parse(input)?
        .into_iter()
        .filter(|c| c.direction == direction)
        .flat_map(|c| c.bytes)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers() {
        let t = b"### >>> APP->FS 9 bytes t=0.000\nconnect\n\n\n### --- NOTE x\n### <<< FS->APP 3 bytes t=0.1\nab\n\n### === EOF (peer closed) t=1\n";
        let c = parse(t).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].bytes, b"connect\n\n");
        assert_eq!(c[1].at, 0.1);
        assert_eq!(stream(t, Direction::FsToApp).unwrap(), b"ab\n");
        assert!(parse(b"### <<< FS->APP 10 bytes\nshort\n").is_err());
        assert!(parse(b"garbage\n").is_err());
    }
}
