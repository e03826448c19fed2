//! The copy of a model optimised for this machine (`ocellus::infer::prepared`): made on the first
//! start, loaded on the next, rebuilt when damaged, and giving the same detections as the model
//! optimised at load. The copies go to a temporary directory (`DetectorOptions::prepared_dir`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ocellus::card::ModelCard;
use ocellus::infer::{Detection, Detector, DetectorOptions, prepared};

fn same(a: &[Detection], b: &[Detection]) {
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.class_id, y.class_id);
        assert!((x.score - y.score).abs() < 1e-4, "{x:?} {y:?}");
        for k in 0..4 {
            assert!((x.bbox[k] - y.bbox[k]).abs() < 1e-4, "{x:?} {y:?}");
        }
    }
}

#[test]
fn an_optimised_copy_is_made_once_reused_and_rebuilt_when_damaged() {
    let rt = common::runtime();
    let cache = tempfile::tempdir().unwrap();
    let opts = DetectorOptions {
        prepared_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let card = ModelCard::load(common::card_path("ssd-mobilenet-v2-coco-cut.toml")).unwrap();
    let frame = common::vtest_frame(0);
    let view = frame.as_view();

    let plain = DetectorOptions {
        prepare: false,
        ..Default::default()
    };
    let reference = Detector::new(rt, &card, &plain)
        .unwrap()
        .detect(&view)
        .unwrap();
    assert!(reference.iter().filter(|d| d.class_id == 1).count() >= 3);

    // first start: optimised at load, and the copy is kept
    let mut first = Detector::new(rt, &card, &opts).unwrap();
    let dir = first.prepared().expect("a copy was kept").to_path_buf();
    assert!(dir.starts_with(cache.path()), "{}", dir.display());
    for f in [prepared::MODEL, prepared::WEIGHTS, "manifest.json"] {
        assert!(dir.join(f).is_file(), "{f} in {}", dir.display());
    }
    let weights = std::fs::metadata(dir.join(prepared::WEIGHTS))
        .unwrap()
        .len();
    assert!(
        weights > 60 << 20,
        "the weights are in their own file: {weights} bytes"
    );
    same(&first.detect(&view).unwrap(), &reference);
    drop(first);
    let made = std::fs::metadata(dir.join("manifest.json"))
        .unwrap()
        .modified()
        .unwrap();

    // second start: the copy is loaded as it is, and detects the same
    let mut second = Detector::new(rt, &card, &opts).unwrap();
    assert_eq!(second.prepared(), Some(dir.as_path()));
    assert_eq!(
        std::fs::metadata(dir.join("manifest.json"))
            .unwrap()
            .modified()
            .unwrap(),
        made,
        "loaded, not made again"
    );
    same(&second.detect(&view).unwrap(), &reference);
    drop(second);

    // a damaged copy is found by its manifest, removed and made again from the verified model
    let path = dir.join(prepared::WEIGHTS);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let mut third = Detector::new(rt, &card, &opts).unwrap();
    assert_eq!(third.prepared(), Some(dir.as_path()));
    let sha = card.expected_sha256(&card.resolve_file().unwrap()).unwrap();
    let copy = prepared::find(cache.path(), &card, &sha, &prepared::machine()).expect("a new copy");
    copy.verify().unwrap();
    same(&third.detect(&view).unwrap(), &reference);

    // the card's own file is still checked when a copy exists: a damaged file beside a manifest
    // that accepted the intact one is refused, not served from the copy
    let bad_dir = tempfile::tempdir().unwrap();
    let real = card.resolve_file().unwrap();
    let full = std::fs::read(&real).unwrap();
    std::fs::write(bad_dir.path().join("damaged.onnx"), &full[..full.len() / 2]).unwrap();
    std::fs::copy(
        ocellus::manifest::path_for(&real),
        ocellus::manifest::path_for(&bad_dir.path().join("damaged.onnx")),
    )
    .unwrap();
    let text = std::fs::read_to_string(&card.path).unwrap().replace(
        &format!("file = \"{}\"", card.file),
        "file = \"damaged.onnx\"",
    );
    let bad_card = bad_dir.path().join("cut.toml");
    std::fs::write(&bad_card, text).unwrap();
    let bad_card = ModelCard::load(&bad_card).unwrap();
    let err = Detector::new(rt, &bad_card, &opts)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("sha256") && err.contains("damaged.onnx"),
        "{err}"
    );

    // another machine (ONNX Runtime build or CPU) has a copy of its own
    let here = prepared::dir_for(cache.path(), &card, &sha, &prepared::machine());
    let there = prepared::dir_for(cache.path(), &card, &sha, "another runtime | another cpu");
    assert_ne!(here, there);
    assert!(prepared::find(cache.path(), &card, &sha, "another runtime | another cpu").is_none());
    // and another accepted conversion (another CPU's bytes) has a copy of its own
    assert_ne!(
        here,
        prepared::dir_for(cache.path(), &card, &"0".repeat(64), &prepared::machine())
    );
}
