//! The README's example: decode the FreeSWITCH side of a capture transcript and print each
//! event's name and recording path. `cargo run -p callrec-esl --example decode_capture [FILE]`.

use bytes::BytesMut;
use callrec_esl::{transcript, FrameDecoder, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/esl/outbound-record-session.focused.txt"
        )
        .into()
    });
    let raw = std::fs::read(path)?;
    let stream = transcript::stream(&raw, transcript::Direction::FsToApp)?;
    let (mut buf, mut decoder) = (BytesMut::from(&stream[..]), FrameDecoder::default());
    while let Some(frame) = decoder.decode_eof(&mut buf)? {
        if let Message::Event(e) = Message::from_frame(frame)? {
            println!("{:?} {:?}", e.name(), e.record_file_path());
        }
    }
    Ok(())
}
