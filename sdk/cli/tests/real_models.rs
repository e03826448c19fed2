//! The real detectors on real footage: SSD-MobileNet-v2-COCO on vtest.avi (decoded by ffmpeg) and
//! basketball1.png, BlazeFace on messi5.jpg. Expected boxes were checked by hand on the images
//! (pixel coordinates read off the frames), not taken from the detector's output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Mutex, OnceLock};

use ocellus::card::ModelCard;
use ocellus::infer::{Detector, DetectorOptions};

fn ssd() -> &'static Mutex<Detector> {
    static SSD: OnceLock<Mutex<Detector>> = OnceLock::new();
    SSD.get_or_init(|| {
        let card = ModelCard::load(common::card_path("ssd-mobilenet-v2-coco.toml")).unwrap();
        Mutex::new(Detector::new(common::runtime(), &card, &DetectorOptions::default()).unwrap())
    })
}

#[test]
fn ssd_finds_the_three_pedestrians_in_vtest_frame_0() {
    let frame = common::vtest_frame(0);
    assert_eq!((frame.width(), frame.height()), (768, 576));
    let dets = ssd().lock().unwrap().detect(&frame.as_view()).unwrap();
    // hand-checked: walking man on the left lawn edge, man on the far path, man on the right
    let want = [
        common::px_box([251.0, 221.0, 283.0, 305.0], 768, 576),
        common::px_box([499.0, 158.0, 528.0, 230.0], 768, 576),
        common::px_box([644.0, 241.0, 684.0, 322.0], 768, 576),
    ];
    let ious = common::best_ious(&dets, "person", &want);
    assert!(
        ious.iter().all(|&i| i >= 0.5),
        "IoUs {ious:?}, detections {dets:?}"
    );
    let persons = dets.iter().filter(|d| &*d.label == "person").count();
    assert_eq!(persons, 3, "exactly three people are in frame 0: {dets:?}");
    for d in &dets {
        assert!(d.bbox[0] < d.bbox[2] && d.bbox[1] < d.bbox[3], "{d:?}");
        assert!(d.bbox.iter().all(|v| (0.0..=1.0).contains(v)), "{d:?}");
        assert!(d.score >= 0.5 && d.score <= 1.0);
    }
}

#[test]
fn ssd_finds_the_people_in_basketball1() {
    let img = ocellus::load_rgb(common::footage("basketball1.png")).unwrap();
    let dets = ssd().lock().unwrap().detect(&img.as_view()).unwrap();
    let want = [
        // the man throwing the ball on the left, the man in the patterned shirt on the right
        common::px_box([38.0, 84.0, 165.0, 478.0], 640, 480),
        common::px_box([436.0, 25.0, 640.0, 480.0], 640, 480),
    ];
    let ious = common::best_ious(&dets, "person", &want);
    assert!(
        ious.iter().all(|&i| i >= 0.5),
        "IoUs {ious:?}, detections {dets:?}"
    );
}

#[test]
fn label_filter_keeps_only_people() {
    let card = ModelCard::load(common::card_path("ssd-mobilenet-v2-coco.toml")).unwrap();
    let opts = DetectorOptions {
        labels: Some(vec!["person".into()]),
        verify_checksum: false,
        ..Default::default()
    };
    // vtest frame 0 also holds two parked cars: the filter must drop them
    let mut det = Detector::new(common::runtime(), &card, &opts).unwrap();
    let dets = det.detect(&common::vtest_frame(0).as_view()).unwrap();
    assert_eq!(dets.len(), 3, "{dets:?}");
    assert!(
        dets.iter()
            .all(|d| &*d.label == "person" && d.class_id == 1)
    );
}

#[test]
fn blazeface_finds_the_face_in_messi5() {
    let card = ModelCard::load(common::card_path("blazeface-back-256.toml")).unwrap();
    let mut det = Detector::new(common::runtime(), &card, &DetectorOptions::default()).unwrap();
    let img = ocellus::load_rgb(common::footage("messi5.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (548, 342));
    let dets = det.detect(&img.as_view()).unwrap();
    assert_eq!(dets.len(), 1, "one face: {dets:?}");
    let want = common::px_box([223.0, 92.0, 259.0, 133.0], 548, 342);
    let iou = common::iou(&dets[0].bbox, &want);
    assert!(iou >= 0.5, "IoU {iou}: {dets:?}");
    assert_eq!(&*dets[0].label, "face");
}
