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

/// A one-file HTTP server on loopback that asks for Basic credentials (401 first, as a camera
/// does), and records whether the right ones came.
fn http_server_with_password(
    body: Vec<u8>,
    user: &str,
    password: &str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use base64::Engine as _;
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let want = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let authorised = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = authorised.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(16).flatten() {
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut ok = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:")
                    && line
                        .to_ascii_lowercase()
                        .trim()
                        .ends_with(&want.to_ascii_lowercase())
                {
                    ok = true;
                }
            }
            let mut conn = conn;
            if ok {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: video/x-msvideo\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            } else {
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (port, authorised)
}

/// Every process's command line on this machine.
fn all_command_lines() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .collect()
}

#[test]
fn a_stream_password_reaches_ffmpeg_but_no_command_line_nor_message() {
    const PASSWORD: &str = "Xq7-not-on-the-command-line";
    let body = std::fs::read(common::footage("vtest.avi")).unwrap();
    let (port, authorised) = http_server_with_password(body, "admin", PASSWORD);
    let url = format!("http://admin:{PASSWORD}@127.0.0.1:{port}/vtest.avi");
    let mut src = ocellus::source::FfmpegSource::open(&url, None, false).unwrap();
    let mut frames = 0;
    let mut leaked = Vec::new();
    while frames < 30 {
        let f = src.next_frame().unwrap().expect("frames from the stream");
        assert_eq!(
            (
                f.image.as_ref().unwrap().width(),
                f.image.as_ref().unwrap().height()
            ),
            (768, 576)
        );
        frames += 1;
        // ffmpeg is running now: nothing on this machine shows the password
        leaked.extend(
            all_command_lines()
                .into_iter()
                .filter(|c| c.contains(PASSWORD)),
        );
    }
    assert!(
        authorised.load(std::sync::atomic::Ordering::Relaxed),
        "the credentials reached the camera"
    );
    assert!(leaked.is_empty(), "password on a command line: {leaked:?}");
    let described = ocellus::source::Source::describe(&src);
    assert!(
        !described.contains(PASSWORD) && described.contains("admin:***@"),
        "{described}"
    );
    assert!(!format!("{src:?}").contains(PASSWORD));
    drop(src);
    // and an error about such a URL does not quote it either
    let bad = format!("http://admin:{PASSWORD}@127.0.0.1:1/nothing.avi");
    let e = ocellus::source::FfmpegSource::open(&bad, None, false)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(PASSWORD) && e.contains("admin:***@"), "{e}");
}
