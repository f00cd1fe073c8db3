//! Any bytes, cut anywhere: the decoder returns frames or an error, never panics, and every
//! frame it returns can be turned into a message and read in full.
#![no_main]

use bytes::BytesMut;
use callrec_esl::{FrameDecoder, Limits, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where to cut the input in two, so split reads are explored too.
    let (cut, data) = match data.split_first() {
        Some((c, rest)) => ((*c as usize * rest.len()) / 255, rest),
        None => return,
    };
    let mut dec = FrameDecoder::new(Limits {
        max_head: 64 * 1024,
        max_body: 64 * 1024,
    });
    let mut buf = BytesMut::new();
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => read_all(frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    while let Ok(Some(frame)) = dec.decode_eof(&mut buf) {
        read_all(frame);
    }
});

fn read_all(frame: callrec_esl::Frame) {
    let _ = frame.content_type();
    if let Ok(msg) = Message::from_frame(frame) {
        match msg {
            Message::Event(e) => {
                for (n, v) in e.iter() {
                    std::hint::black_box((n, v));
                }
                let _ = (e.name(), e.unique_id(), e.variable("record_ms"), e.body());
                let _ = e.recording_variables().count();
            }
            Message::Reply(r) => {
                let _ = (r.text(), r.job_uuid());
                if let Some(e) = r.channel_data() {
                    let _ = e.iter().count();
                }
            }
            Message::Disconnect(d) => {
                let _ = (d.disposition(), d.linger_time());
            }
            _ => {}
        }
    }
}
