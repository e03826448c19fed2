//! Streaming sources: a live stream that breaks is reopened with backoff and the frames keep coming,
//! numbered without gaps. (No RTSP server here: an HTTP stream from a loopback server exercises the
//! same live path — ffmpeg reads it, ends, and the source reconnects.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ocellus::source::{FfmpegSource, Source};

#[test]
fn a_broken_live_stream_reconnects_and_keeps_numbering_frames() {
    let video = std::fs::read(common::footage("vtest.avi")).unwrap();
    let part = Arc::new(video[..video.len() / 4].to_vec()); // ~190 frames, then the server hangs up
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    {
        let (part, connections) = (part.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(20) {
                let Ok(mut s) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let part = part.clone();
                std::thread::spawn(move || {
                    let mut req = [0u8; 4096];
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.read(&mut req);
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: video/x-msvideo\r\nConnection: close\r\n\r\n";
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(&part);
                    // dropping the socket breaks the stream
                });
            }
        });
    }
    let url = format!("http://127.0.0.1:{port}/vtest.avi");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let run = || -> ocellus::Result<(Vec<u64>, u64)> {
            let mut s = FfmpegSource::open(&url, None, false)?;
            assert!(s.is_live());
            let mut seqs = Vec::new();
            while seqs.len() < 300 {
                match s.next_frame()? {
                    Some(f) => seqs.push(f.seq),
                    None => break,
                }
            }
            Ok((seqs, s.stats().reconnects))
        };
        let _ = tx.send(run().map_err(|e| e.to_string()));
    });
    let (seqs, reconnects) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the live source hung")
        .expect("the live source failed");
    assert_eq!(
        seqs.len(),
        300,
        "a live source does not end when its stream breaks"
    );
    assert!(
        seqs.iter().enumerate().all(|(i, &s)| s == i as u64),
        "sequence numbers without gaps"
    );
    assert!(reconnects >= 1, "{reconnects} reconnects");
    // ffprobe + the first ffmpeg + at least one reconnect
    assert!(connections.load(Ordering::SeqCst) >= 3);
}
