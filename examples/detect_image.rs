//! Detect the objects in an image with the SDK's ONNX Runtime detector.
//!
//! ```sh
//! models/provision.sh            # ONNX Runtime, the models, the footage (once)
//! cargo run -p ocellus-cli --example detect_image -- IMAGE [CARD.toml]
//! ```
//!
//! Prints one JSON object per detection: label, score and the box normalised to the image
//! (`[x0, y0, x1, y1]`, top-left origin). Without a card it uses the built-in person detector
//! (SSD-MobileNet-v2-COCO).

use ocellus::runtime::Locator;
use ocellus::{Detector, DetectorOptions, ModelCard, Runtime};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // every SDK error says what is wrong and what to do
            eprintln!("detect_image: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> ocellus::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(image) = args.next() else {
        return Err(ocellus::Error::InvalidOption {
            name: "IMAGE".into(),
            message: "usage: detect_image IMAGE [CARD.toml]".into(),
        });
    };
    // ONNX Runtime: ORT_DYLIB_PATH, else where models/provision.sh put it
    let runtime = Runtime::init(&Locator::from_env(None))?;
    let card = match args.next() {
        Some(path) => ModelCard::load(path)?,
        None => ModelCard::builtin_ssd_cut()?,
    };
    let mut detector = Detector::new(runtime, &card, &DetectorOptions::default())?;
    let frame = ocellus::load_rgb(&image)?;
    for d in detector.detect(&frame.as_view())? {
        let [x0, y0, x1, y1] = d.bbox;
        println!(
            "{{\"label\": \"{}\", \"score\": {:.3}, \"bbox\": [{x0:.4}, {y0:.4}, {x1:.4}, {y1:.4}]}}",
            d.label, d.score
        );
    }
    Ok(())
}
