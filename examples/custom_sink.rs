//! Send events to your own system through a custom [`EventSink`]: here, one JSON line per event
//! over TCP to a collector (`nc -lk 9000` will do for a try), next to the SDK's own JSON-lines
//! file sink.
//!
//! ```sh
//! cargo run -p ocellus-cli --example custom_sink -- 127.0.0.1:9000 events.jsonl [FRAMES]
//! ```
//!
//! The frames are the demo's footage (vtest.avi, from models/provision.sh) through the person
//! detector, the tracker, a counting line and a zone. A sink that cannot deliver refuses the event
//! with an error: the pipeline counts it (`Summary::sink_errors`), logs it, and goes on; the other
//! sinks still get every event. Where no event may be lost, use the MQTT publisher, which queues
//! on disk first.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ocellus::core::{Error as CoreError, Fault};
use ocellus::rules::{LineRule, Rules, RulesConfig, ZoneRule};
use ocellus::runtime::Locator;
use ocellus::source::FfmpegSource;
use ocellus::{
    Detector, DetectorOptions, Event, EventSink, JsonLinesSink, ModelCard, Pipeline, Runtime,
};

/// One JSON line per event to a TCP collector, reconnecting when the connection drops.
struct TcpLines {
    addr: String,
    stream: Option<TcpStream>,
}

impl TcpLines {
    fn connect(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)?;
            // a collector that stops reading must not hold up the camera for long
            stream.set_write_timeout(Some(Duration::from_secs(2)))?;
            self.stream = Some(stream);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }
}

impl EventSink for TcpLines {
    fn send(&mut self, event: &Event) -> ocellus::core::Result<()> {
        let mut line = event.to_json();
        line.push(b'\n');
        let sent = self.connect().and_then(|s| s.write_all(&line));
        sent.map_err(|e| {
            // reconnect on the next event
            self.stream = None;
            CoreError::component(
                Fault::Environment,
                format!("collector {}: event {} not sent: {e}", self.addr, event.id),
            )
        })
    }

    fn flush(&mut self) -> ocellus::core::Result<()> {
        match self.stream.as_mut() {
            Some(s) => s
                .flush()
                .map_err(|e| CoreError::component(Fault::Environment, e)),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("TCP collector {}", self.addr)
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_sink: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> ocellus::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, file, frames) = match args.as_slice() {
        [addr, file] => (addr, file, None),
        [addr, file, n] => (addr, file, n.parse::<u64>().ok()),
        _ => {
            return Err(ocellus::Error::InvalidOption {
                name: "HOST:PORT FILE".into(),
                message: "usage: custom_sink HOST:PORT EVENTS.jsonl [FRAMES]".into(),
            });
        }
    };
    let video = ocellus::paths::footage_dir().join("vtest.avi");
    let runtime = Runtime::init(&Locator::from_env(None))?;
    let detector = Detector::new(
        runtime,
        &ModelCard::builtin_ssd_cut()?,
        &DetectorOptions {
            labels: Some(vec!["person".into()]),
            ..Default::default()
        },
    )?;
    let person = vec!["person".to_owned()];
    let rules = Rules::new(
        vec![LineRule {
            name: "walkway".into(),
            a: [0.75, 0.3],
            b: [0.75, 0.75],
            labels: person.clone(),
        }],
        vec![ZoneRule {
            name: "crossing".into(),
            polygon: vec![[0.25, 0.35], [0.75, 0.35], [0.75, 0.7], [0.25, 0.7]],
            dwell: Some(Duration::from_secs(5)),
            labels: person,
        }],
        RulesConfig::default(),
    )?;
    let mut builder = Pipeline::builder()
        .source(FfmpegSource::open(&video.to_string_lossy(), None, false)?)
        .detector(detector)
        .rules(rules)
        .device("example-camera")
        .sink(TcpLines {
            addr: addr.clone(),
            stream: None,
        })
        .sink(JsonLinesSink::append(file)?);
    if let Some(n) = frames {
        builder = builder.max_frames(n);
    }
    let summary = builder.build()?.run(&AtomicBool::new(false))?;
    eprintln!(
        "{} frames, {} events, {} refused by a sink",
        summary.frames_processed,
        summary.event_count(),
        summary.sink_errors
    );
    Ok(())
}
