//! Run a deployment from a config file, as `ocellus run --config FILE` does: the configured
//! source, model, tracker and rules, with the events published over MQTT through the durable
//! disk queue.
//!
//! ```sh
//! cargo run -p ocellus-cli --example run_config -- ocellus.toml [FRAMES]
//! ```
//!
//! Ctrl-C is left to the default handler here; a product sets the `stop` flag from its own
//! signal handling or service manager so the run ends cleanly (tracks ended, queue flushed).

use std::sync::atomic::AtomicBool;

use ocellus::pipeline::Options;
use ocellus::{Config, Deployment};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // a bad config names the file, the line and the key
            eprintln!("run_config: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> ocellus::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        return Err(ocellus::Error::InvalidOption {
            name: "CONFIG".into(),
            message: "usage: run_config CONFIG.toml [FRAMES]".into(),
        });
    };
    let max_frames = match args.next() {
        Some(n) => Some(n.parse().map_err(|_| ocellus::Error::InvalidOption {
            name: "FRAMES".into(),
            message: format!("{n:?} is not a number of frames"),
        })?),
        None => None,
    };
    let config = Config::load(path.as_ref())?;
    let deployment = Deployment::from_config(&config);
    let stop = AtomicBool::new(false);
    let options = Options {
        max_frames,
        ..Default::default()
    };
    let report = deployment.run(
        &options,
        &stop,
        |event, queued| {
            let line = String::from_utf8_lossy(&event.to_json()).into_owned();
            println!("{} {line}", if queued { "queued" } else { "REFUSED" });
        },
        |_progress| {},
    )?;
    eprintln!(
        "{} frames, {} events, {} acknowledged by the broker",
        report.pipeline.frames_processed,
        report.pipeline.event_count(),
        report.publish.acked
    );
    Ok(())
}
