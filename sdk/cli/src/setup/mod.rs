//! `ocellus setup`: a local web page to draw a config's lines and zones on the camera's view.
//!
//! The config's pipeline runs in the background (a file source is looped and paced at its own
//! rate, like a camera) and its track tap keeps the latest frame with every detected or tracked
//! person pixelated ([`crate::annotate::might_be_a_person`], the snapshot module's blur), encoded
//! as a JPEG about twice a second: no other pixels ever leave the process. The page shows that
//! still, draws the rules over it and lets the pilot drag, add, remove and rename them; Save
//! checks the result as `check-config` does, writes the file with its comments kept
//! ([`save`]), and puts the new rules into the running pipeline, so the live counts follow.
//!
//! Access: on a loopback address the page is open to local users; on any other address every
//! request needs the random token printed at start (`?token=` or `Authorization: Bearer`), and
//! is answered 401 without it. On either, requests that another web page could make from the
//! pilot's browser (a foreign `Host` or `Origin`, a save that is not JSON) are refused.

pub(crate) mod save;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use ocellus::config::Config;
use ocellus::pipeline::{LiveControl, Options, TrackTap, TracksSeen};
use ocellus::rules::{LineRule, Rules, ZoneRule};
use ocellus::snapshot::{self, Scene};
use ocellus::source::SourceConfig;
use ocellus::{Deployment, Error, Result};

use crate::annotate::{Tally, might_be_a_person};
use save::RulesEdit;

/// The page and its script, served from the binary.
const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");

/// How often the still is encoded (the page asks about once a second).
const STILL_EVERY: Duration = Duration::from_millis(500);
/// The still's JPEG bound.
const STILL_MAX_BYTES: usize = 2 << 20;
/// Largest request body (a save of the most rules fits many times).
const MAX_BODY: usize = 256 << 10;
/// A file source's pace when its rate is unknown.
const DEFAULT_FPS: f64 = 10.0;

/// Arguments of `ocellus setup`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetupArgs {
    /// The config to edit (its source, model and tracker run while you draw).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Address to serve the page on. Anything but loopback requires the printed token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: SocketAddr,
}

/// The latest still and what the pipeline counted, shared by the tap and the server.
#[derive(Debug)]
struct View {
    /// (frame, JPEG, width, height) of the latest still.
    still: Option<(u64, Vec<u8>, u32, u32)>,
    encoded_at: Option<Instant>,
    frame: u64,
    lines: Vec<LineRule>,
    zones: Vec<ZoneRule>,
    tally: Tally,
    /// Why the pipeline stopped, if it did.
    stopped: Option<String>,
}

struct Shared {
    config: PathBuf,
    token: Option<String>,
    view: Mutex<View>,
    control: Arc<LiveControl>,
    /// One save at a time.
    saving: tokio::sync::Mutex<()>,
}

/// A random token from the kernel (128 bits, hex).
fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| Error::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal in time whatever the inputs, so the token cannot be guessed byte by byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn token_of(req: &Request) -> Option<String> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    bearer.or_else(|| {
        req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_owned)
        })
    })
}

/// A host name a browser only sends for this machine: an IP address or `localhost`. Any other
/// name means a page elsewhere re-pointed its own name at us (DNS rebinding).
fn local_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Requests another web page could make from the pilot's browser are refused: a `Host` that
/// is not this machine, an `Origin` other than the page's own, and a save that is not JSON
/// (JSON needs a CORS preflight, which this server never grants).
fn cross_site(req: &Request) -> Option<Response> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header(header::HOST).unwrap_or("");
    if !local_host(host) {
        return Some((StatusCode::FORBIDDEN, "403: unexpected Host\n").into_response());
    }
    if let Some(origin) = header(header::ORIGIN)
        && origin.split_once("://").map(|(_, h)| h) != Some(host)
    {
        return Some((StatusCode::FORBIDDEN, "403: cross-origin request\n").into_response());
    }
    let json = header(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json"));
    if req.method() == axum::http::Method::POST && !json {
        return Some(
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "415: send application/json\n",
            )
                .into_response(),
        );
    }
    None
}

async fn auth(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(refused) = cross_site(&req) {
        return refused;
    }
    match (&s.token, token_of(&req)) {
        (None, _) => next.run(req).await,
        (Some(want), Some(got)) if same(want, &got) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            "401: this page needs the token `ocellus setup` printed when it started\n",
        )
            .into_response(),
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page with its script inline (a separate request would need the token in its URL).
async fn page() -> Response {
    let html = PAGE.replace(
        "<script src=\"page.js\"></script>",
        &format!("<script>\n{SCRIPT}</script>"),
    );
    no_store(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn still(State(s): State<Arc<Shared>>) -> Response {
    let view = s.view.lock().map(|v| v.still.clone()).ok().flatten();
    match view {
        Some((frame, jpeg, ..)) => {
            let mut r = ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response();
            if let Ok(v) = HeaderValue::from_str(&frame.to_string()) {
                r.headers_mut().insert("x-ocellus-frame", v);
            }
            no_store(r)
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n").into_response(),
    }
}

#[derive(Serialize)]
struct ConfigView {
    path: String,
    width: Option<u32>,
    height: Option<u32>,
    lines: Vec<save::LineEdit>,
    zones: Vec<save::ZoneEdit>,
}

fn edits(lines: &[LineRule], zones: &[ZoneRule]) -> RulesEdit {
    // f32 in the config, shown as the decimals it was written with
    let p = |v: [f32; 2]| v.map(|c| (f64::from(c) * 1e6).round() / 1e6);
    RulesEdit {
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, l)| save::LineEdit {
                name: l.name.clone(),
                a: p(l.a),
                b: p(l.b),
                orig: Some(i),
            })
            .collect(),
        zones: zones
            .iter()
            .enumerate()
            .map(|(i, z)| save::ZoneEdit {
                name: z.name.clone(),
                polygon: z.polygon.iter().map(|v| p(*v)).collect(),
                orig: Some(i),
            })
            .collect(),
    }
}

/// The rules as the file has them now (it may have been edited by hand).
async fn config_view(State(s): State<Arc<Shared>>) -> Response {
    let cfg = match Config::load(&s.config) {
        Ok(c) => c,
        Err(e) => return (StatusCode::CONFLICT, e.to_string()).into_response(),
    };
    let size = s
        .view
        .lock()
        .ok()
        .and_then(|v| v.still.as_ref().map(|st| (st.2, st.3)));
    let RulesEdit { lines, zones } = edits(&cfg.rules.lines, &cfg.rules.zones);
    no_store(
        axum::Json(ConfigView {
            path: s.config.display().to_string(),
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            lines,
            zones,
        })
        .into_response(),
    )
}

#[derive(Serialize)]
struct Counts {
    frame: u64,
    lines: Vec<(String, [u64; 2])>,
    zones: Vec<(String, i64)>,
    stopped: Option<String>,
}

async fn counts(State(s): State<Arc<Shared>>) -> Response {
    let Ok(v) = s.view.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let body = Counts {
        frame: v.frame,
        lines: v
            .lines
            .iter()
            .zip(&v.tally.lines)
            .map(|(l, c)| (l.name.clone(), *c))
            .collect(),
        zones: v
            .zones
            .iter()
            .zip(&v.tally.zones)
            .map(|(z, n)| (z.name.clone(), *n))
            .collect(),
        stopped: v.stopped.clone(),
    };
    no_store(axum::Json(body).into_response())
}

/// Why a save was refused: the message, and which rule it concerns when the config check
/// named one (`rules.line[2]…`), so the page can show it next to that rule.
#[derive(Serialize)]
struct Refusal {
    error: String,
    kind: Option<&'static str>,
    index: Option<usize>,
}

fn refusal(status: StatusCode, error: String) -> Response {
    let located = ["line", "zone"].into_iter().find_map(|kind| {
        let at = error.find(&format!("rules.{kind}["))?;
        let rest = &error[at + kind.len() + 7..];
        let index = rest.split(']').next()?.parse().ok()?;
        Some((kind, index))
    });
    let body = Refusal {
        error,
        kind: located.map(|l| l.0),
        index: located.map(|l| l.1),
    };
    (status, axum::Json(body)).into_response()
}

/// Check the edit as `check-config` would, write the file (comments kept), and put the new
/// rules into the running pipeline.
async fn save_config(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let edit: RulesEdit = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, format!("not a rules edit: {e}")),
    };
    let _one_at_a_time = s.saving.lock().await;
    let text = match std::fs::read_to_string(&s.config) {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("{}: cannot read: {e}", s.config.display());
            return refusal(StatusCode::CONFLICT, msg);
        }
    };
    let new = match save::apply(&text, &edit) {
        Ok(t) => t,
        Err(e) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let cfg = match Config::parse(&new, &s.config) {
        Ok(c) => c,
        Err(e) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let rules = match Rules::new(
        cfg.rules.lines.clone(),
        cfg.rules.zones.clone(),
        cfg.rules.config.clone(),
    ) {
        Ok(r) => r,
        Err(e) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    if let Err(e) = write_atomically(&s.config, &new) {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    if let Ok(mut v) = s.view.lock() {
        v.lines = cfg.rules.lines.clone();
        v.zones = cfg.rules.zones.clone();
        v.tally = Tally::new(v.lines.len(), v.zones.len());
    }
    s.control.replace_rules(rules);
    tracing::info!("setup: saved {}", s.config.display());
    no_store(
        axum::Json(serde_json::json!({ "saved": s.config.display().to_string() })).into_response(),
    )
}

/// Write next to the file, then rename over it: a crash leaves the old file or the new one.
fn write_atomically(path: &Path, text: &str) -> std::result::Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.saving"));
    let result = std::fs::write(&tmp, text)
        .and_then(|()| {
            if let Ok(meta) = std::fs::metadata(path) {
                std::fs::set_permissions(&tmp, meta.permissions())?;
            }
            Ok(())
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", path.display())
    })
}

/// The track tap: counts, and a still with people hidden every [`STILL_EVERY`].
fn tap(shared: &Arc<Shared>) -> TrackTap {
    let shared = shared.clone();
    TrackTap::new(move |seen: &TracksSeen<'_>| {
        let Ok(mut v) = shared.view.lock() else {
            return;
        };
        v.frame = seen.seq;
        let (lines, zones) = (v.lines.clone(), v.zones.clone());
        v.tally.update(seen, (&lines, &zones), 1);
        let due = v.encoded_at.is_none_or(|t| t.elapsed() >= STILL_EVERY);
        let Some(image) = seen.image.filter(|_| due) else {
            return;
        };
        let hide: Vec<[f32; 4]> = seen
            .detections
            .iter()
            .map(|d| d.bbox)
            .filter(|b| might_be_a_person(*b))
            .chain(seen.tracks.observed.iter().map(|t| t.bbox))
            .collect();
        let scene = Scene {
            frame: image,
            hide: &hide,
            tracks: &[],
            lines: &[],
            zones: &[],
        };
        v.encoded_at = Some(Instant::now());
        match snapshot::render(&scene, STILL_MAX_BYTES) {
            Ok(s) => v.still = Some((seen.seq, s.jpeg, s.width, s.height)),
            Err(e) => tracing::warn!("setup: frame {}: {e}", seen.seq),
        }
    })
}

/// The deployment the page watches: a file source loops at its own pace, like a camera.
fn watched(cfg: &Config) -> Deployment {
    let mut d = Deployment::from_config(cfg);
    if let SourceConfig::Video { fps, looped, input } = &mut d.source {
        if matches!(input, ocellus::source::VideoInput::File(_)) {
            *looped = true;
        }
        fps.get_or_insert(crate::annotate::probe_fps(cfg).unwrap_or(DEFAULT_FPS));
    }
    if let SourceConfig::Images { fps, looped, .. } = &mut d.source {
        *looped = true;
        fps.get_or_insert(DEFAULT_FPS);
    }
    d
}

/// Run `ocellus setup` until Ctrl-C.
pub(crate) fn run(args: &SetupArgs, stop: &Arc<AtomicBool>) -> Result<u8> {
    let cfg = Config::load(&args.config)?;
    let token = if args.listen.ip().is_loopback() {
        None
    } else {
        Some(new_token()?)
    };
    let control = Arc::new(LiveControl::default());
    let shared = Arc::new(Shared {
        config: args.config.clone(),
        token,
        view: Mutex::new(View {
            still: None,
            encoded_at: None,
            frame: 0,
            lines: cfg.rules.lines.clone(),
            zones: cfg.rules.zones.clone(),
            tally: Tally::new(cfg.rules.lines.len(), cfg.rules.zones.len()),
            stopped: None,
        }),
        control: control.clone(),
        saving: tokio::sync::Mutex::new(()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Frame(format!("cannot start the web server's runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .map_err(|e| Error::InvalidOption {
            name: "--listen".into(),
            message: format!("cannot listen on {}: {e}", args.listen),
        })?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    let opts = Options {
        tracks: Some(tap(&shared)),
        tap_pixels: true,
        control: Some(control),
        ..Default::default()
    };
    let deployment = watched(&cfg);
    let pipeline = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("ocellus-setup-pipeline".into())
            .spawn(move || {
                let why = match deployment.replay(&opts, &stop, |_| {}) {
                    Ok(s) => format!("the source ended after {} frames", s.frames_processed),
                    Err(e) => e.to_string(),
                };
                if !stop.load(Ordering::Relaxed) {
                    eprintln!("setup: the pipeline stopped: {why}");
                }
                if let Ok(mut v) = shared.view.lock() {
                    v.stopped = Some(why);
                }
            })
            .map_err(|e| Error::Frame(format!("cannot start the pipeline thread: {e}")))?
    };
    match &shared.token {
        None => println!("setup page: http://{addr}/  (Ctrl-C to stop)"),
        Some(t) => println!(
            "setup page: http://{addr}/?token={t}  (not loopback: every request needs this token; Ctrl-C to stop)"
        ),
    }
    let app = Router::new()
        .route("/", get(page))
        .route("/api/frame.jpg", get(still))
        .route("/api/config", get(config_view).post(save_config))
        .route("/api/counts", get(counts))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared);
    let stopped = {
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let served = rt.block_on(async {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
    });
    stop.store(true, Ordering::Relaxed);
    let _ = pipeline.join();
    served.map_err(|e| Error::Frame(format!("the web server failed: {e}")))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_this_machines_names_are_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "10.0.0.5",
            "LOCALHOST",
        ] {
            assert!(local_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "",
            "127.0.0.1.nip.io:8080",
        ] {
            assert!(!local_host(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[..31]));
    }

    #[test]
    fn a_refusal_names_the_rule_the_config_check_named() {
        let r = refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "x.toml line 9: `rules.zone[1].polygon`: needs at least 3 vertices".into(),
        );
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = futures_body(r);
        assert_eq!(body["kind"], "zone");
        assert_eq!(body["index"], 1);
    }

    fn futures_body(r: Response) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 16))
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}
