//! A deployment: everything `ocellus run` (or an integrator's program) needs to go from a source
//! to events on a broker, built from a [`Config`] or by hand, and run to the end.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicBool, Ordering};
//! # fn main() -> ocellus::Result<()> {
//! let config = ocellus::config::Config::load("ocellus.toml".as_ref())?;
//! let deployment = ocellus::deploy::Deployment::from_config(&config);
//! let stop = AtomicBool::new(false);
//! let report = deployment.run(&Default::default(), &stop, |event, _accepted| {
//!     println!("{}", String::from_utf8_lossy(&event.to_json()));
//! }, |_| {})?;
//! println!("{} events", report.pipeline.event_count());
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use crate::agent::SNAPSHOT_MAX_BYTES;
use crate::agent::{Agent, AgentSetup, LiveSettings};
use crate::card::ModelCard;
use crate::config::{Config, RulesSection};
use crate::error::Result;
use crate::event::Event;
use crate::health::Reporter;
use crate::imx500::Imx500Inference;
use crate::infer::{Detector, DetectorOptions};
use crate::pipeline::{self, LiveCounters, Pipeline, Progress, Summary};
use crate::publish::{MqttSettings, PublishSummary, Publisher};
use crate::rules::Rules;
use crate::runtime::{Locator, Runtime};
use crate::source::{FfmpegSource, ImageSource, Source, SyntheticSource};
use crate::source::{SourceConfig, VideoInput};
use crate::tile::{Tiled, Tiling};
use crate::track::TrackerConfig;
use ocellus_core::EventSink;

/// How long a clean stop waits for the broker to acknowledge what is queued.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Deployment::run`] gives the first MQTT connection (counted from its start, so
/// usually spent loading the model) to find a configuration problem such as a wrong password.
pub const CONNECT_CHECK: Duration = Duration::from_secs(5);
/// Messages from a cloud hub waiting for the management agent.
const INBOX: usize = 64;

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Device id (a topic level).
    pub device: Arc<str>,
    /// Where frames come from.
    pub source: SourceConfig,
    /// The model.
    pub card: ModelCard,
    /// Detector settings (threads, threshold, labels).
    pub detector: DetectorOptions,
    /// Run the detector on tiles of each frame (`model.tiles`; `None`: the whole frame).
    pub tiling: Option<Tiling>,
    /// Explicit ONNX Runtime library, if any.
    pub onnxruntime: Option<PathBuf>,
    /// Tracker settings.
    pub tracker: TrackerConfig,
    /// Lines, zones and their settings.
    pub rules: RulesSection,
    /// Broker and topics.
    pub mqtt: MqttSettings,
    /// How often the retained health message is published.
    pub health_interval: Duration,
    /// Whether a cloud hub may ask for a snapshot (`cloud.snapshots`).
    pub snapshots: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Frames, drops, events, timings.
    pub pipeline: Summary,
    /// What reached the broker.
    pub publish: PublishSummary,
    /// From [`Deployment::run`] being called to the detector and source being ready.
    pub startup: Duration,
    /// When [`Deployment::run`] was called (with a process start time, the time spent before it).
    pub started_at: Instant,
    /// Of `startup`: finding and loading the ONNX Runtime library.
    pub runtime_load: Duration,
    /// Of `startup`: the model: checksum, session (graph optimisation), input and output checks.
    pub model_load: Duration,
    /// Of `startup`: opening the source.
    pub source_open: Duration,
    /// The model file that was loaded.
    pub model_path: PathBuf,
}

impl Deployment {
    /// The deployment a config describes.
    pub fn from_config(cfg: &Config) -> Deployment {
        Deployment {
            device: Arc::from(cfg.device.id.as_str()),
            source: cfg.source.clone(),
            card: cfg.model.card.clone(),
            detector: DetectorOptions {
                intra_threads: cfg.runtime.threads,
                score_threshold: cfg.model.threshold,
                labels: cfg.model.labels.clone(),
                ..Default::default()
            },
            tiling: cfg.model.tiling,
            onnxruntime: cfg.runtime.onnxruntime.clone(),
            tracker: cfg.tracker.clone(),
            rules: cfg.rules.clone(),
            mqtt: cfg.mqtt_settings(),
            health_interval: cfg.health.interval,
            snapshots: cfg.cloud.as_ref().is_some_and(|c| c.snapshots),
        }
    }

    /// The detector and tracker settings a run uses. ByteTrack's second association pass lives on
    /// low-score detections, so the detector reports down to the tracker's `low_threshold`, and the
    /// model threshold (config or card) becomes the tracker's `high_threshold` (at least): tracks
    /// start and are confirmed only from detections the model threshold accepts, and weaker ones
    /// only keep existing tracks alive through partial occlusion.
    pub fn tracking_thresholds(&self) -> (DetectorOptions, TrackerConfig) {
        let model = self
            .detector
            .score_threshold
            .unwrap_or_else(|| self.card.output.score_threshold());
        let (floor, tracker) = self.tracker.coupled_to(model);
        let mut detector = self.detector.clone();
        detector.score_threshold = Some(floor);
        (detector, tracker)
    }

    /// Open the configured source.
    pub fn open_source(&self) -> Result<Box<dyn Source>> {
        Ok(match &self.source {
            SourceConfig::Video { input, fps, looped } => {
                let s = match input {
                    VideoInput::File(p) => p.to_string_lossy().into_owned(),
                    VideoInput::Url(u) => u.clone(),
                };
                Box::new(FfmpegSource::open(&s, *fps, *looped)?)
            }
            SourceConfig::Images {
                pattern,
                fps,
                looped,
            } => Box::new(ImageSource::open(
                &pattern.to_string_lossy(),
                *fps,
                *looped,
            )?),
            SourceConfig::Sensor {
                bus,
                mode,
                fps,
                exposure_us,
                analog_gain_db,
                auto_exposure,
                test_pattern,
                video,
                sprite,
                ..
            } => Box::new(crate::source::SensorSource::open(
                &crate::source::SensorSettings {
                    mode: *mode,
                    fps: *fps as f32,
                    exposure_us: exposure_us.map(|v| v as f32),
                    analog_gain_db: analog_gain_db.map(|v| v as f32),
                    pattern: *test_pattern,
                    auto_exposure: *auto_exposure,
                    bus: bus.clone(),
                    video: video.clone(),
                    sprite: sprite.clone(),
                },
            )?),
            SourceConfig::V4l2 {
                device,
                format,
                size,
                fps,
            } => Box::new(crate::source::V4l2Source::open(
                device,
                crate::source::v4l2::Request {
                    format: *format,
                    size: *size,
                    fps: *fps,
                },
            )?),
            SourceConfig::Imx500(settings) => {
                Box::new(crate::imx500::Imx500Source::open(settings, |footage| {
                    // the simulated sensor: the footage through the card's model, standing in
                    // for the network on the chip
                    let video = FfmpegSource::open(&footage.to_string_lossy(), None, false)?;
                    let runtime = Runtime::init(&Locator::from_env(self.onnxruntime.clone()))?;
                    let chip = Detector::new(runtime, &self.card, &self.detector)?;
                    crate::imx500::sim::Imx500Sim::new(Box::new(video), chip, settings.stride)
                })?)
            }
            SourceConfig::Synthetic {
                width,
                height,
                frames,
                objects,
                seed,
                fps,
            } => Box::new(SyntheticSource::new(
                *width,
                *height,
                *frames,
                *objects as usize,
                *seed,
                fps.unwrap_or(10.0),
                fps.is_some(),
            )?),
        })
    }

    /// The cloud hub's management agent for this deployment.
    fn agent(&self, settings: &Arc<LiveSettings>, control: &Arc<pipeline::LiveControl>) -> Agent {
        Agent::new(AgentSetup {
            device: self.device.clone(),
            profile: self.mqtt.profile.clone(),
            snapshots: self.snapshots,
            model: crate::config::ModelConfig {
                card_path: self.card.path.clone(),
                card: self.card.clone(),
                threshold: self.detector.score_threshold,
                labels: self.detector.labels.clone(),
                tiling: self.tiling,
            },
            file_rules: self.rules.clone(),
            queue: self.mqtt.queue.clone(),
            live: settings.clone(),
            control: control.clone(),
        })
    }

    /// What runs the network, and the start-up it took: (stage, ONNX Runtime load, model load,
    /// model file). On an IMX500 the sensor runs it: no ONNX Runtime, no model on the host.
    fn stage(&self) -> Result<(Staged, Duration, Duration, PathBuf)> {
        let t_runtime = Instant::now();
        Ok(match &self.source {
            // the network runs on the sensor: no ONNX Runtime, no model on the host
            SourceConfig::Imx500(settings) => {
                let stride = match &settings.feed {
                    crate::imx500::TensorFeed::Capture(p) => {
                        crate::imx500::capture::CaptureReader::open(p)?.stride()
                    }
                    _ => settings.stride,
                };
                let on_chip = Imx500Inference::new(&self.card, &self.detector, stride)?;
                let took = t_runtime.elapsed();
                (
                    Staged::OnSensor(Box::new(on_chip)),
                    Duration::ZERO,
                    took,
                    self.card.path.clone(),
                )
            }
            _ => {
                let runtime = Runtime::init(&Locator::from_env(self.onnxruntime.clone()))?;
                let runtime_load = t_runtime.elapsed();
                let t_model = Instant::now();
                // the builder lowers the detector's threshold to the tracker's (see
                // tracking_thresholds)
                let detector = Detector::new(runtime, &self.card, &self.detector)?;
                let model_path = detector.model_path().to_path_buf();
                let staged = match self.tiling {
                    // one call per tile: the caller's-inference path of the pipeline
                    Some(tiling) => Staged::Tiled(Box::new(Tiled::new(detector, tiling)?)),
                    None => Staged::Host(Box::new(detector)),
                };
                (staged, runtime_load, t_model.elapsed(), model_path)
            }
        })
    }

    /// Run the configured source through the model, the tracker and the rules, connecting to
    /// nothing and queueing nothing: what the run made is seen only by `opts.tracks` (frame by
    /// frame, with its events) and the returned summary. For replays that draw or score what this
    /// deployment would count (`ocellus annotate`).
    ///
    /// # Errors
    /// As [`Deployment::run`] for the model, the rules and the source; no broker or queue errors.
    pub fn replay(
        self,
        opts: &pipeline::Options,
        stop: &AtomicBool,
        on_progress: impl FnMut(&Progress),
    ) -> Result<Summary> {
        let (stage, ..) = self.stage()?;
        let rules = Rules::new(
            self.rules.lines.clone(),
            self.rules.zones.clone(),
            self.rules.config.clone(),
        )?;
        let source = self.open_source()?;
        let builder = Pipeline::builder().boxed_source(source);
        let builder = match stage {
            Staged::Host(detector) => builder.detector(*detector),
            Staged::Tiled(tiled) => builder.inference(*tiled),
            Staged::OnSensor(on_chip) => builder.inference(*on_chip),
        };
        builder
            .tracker(self.tracker.clone())
            .rules(rules)
            .device(&self.device)
            .options(opts.clone())
            .build()?
            .run_with_progress(stop, on_progress)
    }

    /// Load the model, open the source, connect, and run until the source ends, `opts.max_frames`,
    /// or `stop` is set; then flush the events and publish the `offline` status.
    /// `on_event(event, accepted)` sees every event after it was offered to the publisher.
    pub fn run(
        self,
        opts: &pipeline::Options,
        stop: &AtomicBool,
        on_event: impl FnMut(&Event, bool),
        on_progress: impl FnMut(&Progress),
    ) -> Result<Report> {
        self.run_with_source(|d| d.open_source(), opts, stop, on_event, on_progress)
    }

    /// [`Deployment::run`] with a source of the caller's making: a simulated sensor with a
    /// scripted scene, a vendor camera API, a test double. `open` is called once the model is
    /// loaded (right before the first frame is wanted), so a live source does not deliver a backlog
    /// of frames captured during start-up. The configured `source` is ignored.
    pub fn run_with_source(
        self,
        open: impl FnOnce(&Deployment) -> Result<Box<dyn Source>>,
        opts: &pipeline::Options,
        stop: &AtomicBool,
        mut on_event: impl FnMut(&Event, bool),
        on_progress: impl FnMut(&Progress),
    ) -> Result<Report> {
        let t0 = Instant::now();
        // the queue and the TLS files first: a bad queue directory or key file fails at once, and
        // the connection is made while the model loads
        let cloud = !matches!(self.mqtt.profile, crate::cloud::Profile::Generic);
        let (inbox_tx, inbox) = std::sync::mpsc::sync_channel(INBOX);
        let publisher = Publisher::start_with_inbox(self.mqtt.clone(), cloud.then_some(inbox_tx))?;
        let (stage, runtime_load, model_load, model_path) = self.stage()?;
        let rules = Rules::new(
            self.rules.lines.clone(),
            self.rules.zones.clone(),
            self.rules.config.clone(),
        )?;
        let t_source = Instant::now();
        let source = open(&self)?;
        let source_open = t_source.elapsed();
        let startup = t0.elapsed();
        // a wrong CA, password or client certificate is a set-up error; an unreachable broker is
        // not (events wait on disk)
        let budget = CONNECT_CHECK.saturating_sub(t0.elapsed());
        if !publisher.check_connect(budget)? {
            tracing::warn!(
                "MQTT broker {} not reachable yet: events wait in the queue at {} and are sent when it is",
                self.mqtt.broker(),
                self.mqtt.queue.dir.display()
            );
        }
        let live = opts.live.clone().unwrap_or_default();
        let control = opts.control.clone().unwrap_or_default();
        let settings = Arc::new(LiveSettings::new(self.health_interval));
        let sink = PublisherSink {
            publisher: &publisher,
            broker: self.mqtt.broker(),
            settings: settings.clone(),
            on_event: &mut on_event,
        };
        let builder = Pipeline::builder().boxed_source(source);
        let builder = match stage {
            Staged::Host(detector) => builder.detector(*detector),
            Staged::Tiled(tiled) => builder.inference(*tiled),
            Staged::OnSensor(on_chip) => builder.inference(*on_chip),
        };
        let pipeline = builder
            .tracker(self.tracker.clone())
            .rules(rules)
            .device(&self.device)
            .sink(sink)
            .options(pipeline::Options {
                live: Some(live.clone()),
                control: Some(control.clone()),
                ..opts.clone()
            })
            .build()?;
        let mut agent = cloud.then(|| self.agent(&settings, &control));
        let mut reporter = Reporter::new(&self.device, &self.mqtt.queue, publisher.recovered());
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let (publisher, live, done, reporter) = (&publisher, &live, &done, &mut reporter);
            let health = std::thread::Builder::new()
                .name("ocellus-health".into())
                .spawn_scoped(scope, move || {
                    health_loop(publisher, reporter, live, &settings, done);
                });
            let agent_thread = agent.as_mut().map(move |agent| {
                std::thread::Builder::new()
                    .name("ocellus-cloud".into())
                    .spawn_scoped(scope, move || agent.run(publisher, &inbox, done))
            });
            let result = pipeline.run_with_progress(stop, on_progress);
            done.store(true, Ordering::Relaxed);
            if let Ok(h) = health {
                let _ = h.join();
            }
            if let Some(Ok(a)) = agent_thread {
                let _ = a.join();
            }
            result
        });
        // the last word before `offline`: the final counters, once the queue has drained
        let publish = publisher.shutdown_with_health(
            FLUSH_TIMEOUT,
            Box::new(move |h| reporter.report(&live, h).to_json()),
        );
        Ok(Report {
            pipeline: result?,
            publish,
            startup,
            started_at: t0,
            runtime_load,
            model_load,
            source_open,
            model_path,
        })
    }
}

/// What runs the network: the host (ONNX Runtime) or the sensor itself.
enum Staged {
    Host(Box<Detector>),
    Tiled(Box<Tiled<Detector>>),
    OnSensor(Box<Imx500Inference>),
}

/// Publish the retained health message every interval (the hub may change it) until `done`.
fn health_loop(
    publisher: &Publisher,
    reporter: &mut Reporter,
    live: &LiveCounters,
    settings: &LiveSettings,
    done: &AtomicBool,
) {
    let mut next = Instant::now();
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            let h = reporter.report(live, &publisher.health());
            publisher.post_health(h.to_json());
            let interval = settings.health_interval().max(Duration::from_millis(100));
            next = Instant::now() + interval;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The deployment's sink: the publisher, less the event types a cloud hub turned off
/// (`publish.event_types`: counted in the summary, not sent); the caller sees every event sent and
/// whether the queue took it.
struct PublisherSink<'p, F> {
    publisher: &'p Publisher,
    broker: String,
    settings: Arc<LiveSettings>,
    on_event: F,
}

impl<F: FnMut(&Event, bool)> EventSink for PublisherSink<'_, F> {
    fn send(&mut self, event: &Event) -> ocellus_core::Result<()> {
        if !self.settings.allows(event.kind) {
            return Ok(());
        }
        let accepted = self.publisher.publish(event);
        (self.on_event)(event, accepted);
        if accepted {
            Ok(())
        } else {
            Err(ocellus_core::Error::component(
                ocellus_core::Fault::Environment,
                format!(
                    "event {} refused by the queue's bounds (queue.max_mb with queue.when_full = refuse_new), or the queue could not store it",
                    event.id
                ),
            ))
        }
    }

    fn describe(&self) -> String {
        format!("MQTT {}", self.broker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(threshold: Option<f32>) -> Deployment {
        let device: Arc<str> = Arc::from("t");
        Deployment {
            device: device.clone(),
            source: SourceConfig::Synthetic {
                width: 64,
                height: 64,
                frames: 1,
                objects: 1,
                seed: 0,
                fps: None,
            },
            card: ModelCard::builtin_ssd().expect("built-in card"),
            detector: DetectorOptions {
                score_threshold: threshold,
                ..Default::default()
            },
            tiling: None,
            onnxruntime: None,
            tracker: TrackerConfig::default(),
            rules: RulesSection::default(),
            mqtt: MqttSettings::new("127.0.0.1", 1883, &device, "/nonexistent/queue"),
            health_interval: Duration::from_secs(30),
            snapshots: false,
        }
    }

    #[test]
    fn the_tracker_sees_low_scores_and_the_model_threshold_gates_tracks() {
        // card threshold 0.5, tracker defaults (low 0.1, high 0.5, new 0.6)
        let (det, trk) = deployment(None).tracking_thresholds();
        assert_eq!(det.score_threshold, Some(0.1));
        assert_eq!(
            (
                trk.low_threshold,
                trk.high_threshold,
                trk.new_track_threshold
            ),
            (0.1, 0.5, 0.6)
        );
        // a stricter model threshold raises the tracker's high and new-track thresholds
        let (det, trk) = deployment(Some(0.7)).tracking_thresholds();
        assert_eq!(det.score_threshold, Some(0.1));
        assert_eq!((trk.high_threshold, trk.new_track_threshold), (0.7, 0.7));
    }
}
