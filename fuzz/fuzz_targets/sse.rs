//! The SSE decoder the relay reads an upstream's event stream with, on any bytes split anywhere:
//! decoding never panics, and the split does not change the events.
#![no_main]

use cerberus_axum::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(chunks: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(decoder.push(chunk).ok()?);
    }
    events.extend(decoder.finish());
    Some(events.iter().map(|e| e.encode().to_vec()).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(stream.len());
    let (head, tail) = stream.split_at(at);
    let whole = decode(&[stream]);
    let split = decode(&[head, tail]);
    assert_eq!(whole, split, "splitting the stream changed its events");
});
