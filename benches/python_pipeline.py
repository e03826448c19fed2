#!/usr/bin/env python3
"""The obvious Python pipeline, the "B" side of benches/ab.sh.

OpenCV decodes the video, each frame is resized to 300x300 and fed to the full-graph
SSD-MobileNet-v2-COCO ONNX model through onnxruntime, persons (score >= 0.5) go through a greedy
IoU tracker, and a track whose bottom-centre point crosses a counting line publishes a small JSON
event over MQTT (QoS 1). One thread, one frame at a time, library defaults everywhere.

At the end it prints one JSON line:
  {"frames": N, "events": E, "acked": E, "seconds": S, "fps": N/S, "model_load_s": L, ...}
`seconds` runs from just before the first frame is read (the model session is created and MQTT is
connected by then) until the last frame's events are published; waiting for the broker's
acknowledgements comes after it and is not timed.

Usage: python_pipeline.py --model MODEL.onnx --video VIDEO --broker HOST:PORT [--line AX,AY,BX,BY]
"""

import argparse
import json
import sys
import threading
import time

import cv2
import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt

PERSON = 1
SCORE_MIN = 0.5
MATCH_IOU = 0.3
MAX_UNSEEN = 10
SIZE = 300


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the full-graph SSD-MobileNet-v2-COCO .onnx")
    p.add_argument("--video", required=True, help="the video file (e.g. vtest.avi)")
    p.add_argument("--broker", required=True, help="MQTT broker as HOST:PORT (plaintext)")
    p.add_argument("--line", default="0.75,0.3,0.75,0.75",
                   help="counting line a→b as AX,AY,BX,BY, normalised (default: the ocellus demo's)")
    p.add_argument("--line-name", default="walkway")
    p.add_argument("--device", default="bench-python", help="device id used in topics and events")
    p.add_argument("--topic-prefix", default="bench")
    p.add_argument("--ack-timeout", type=float, default=60.0,
                   help="seconds to wait for the broker to acknowledge every event at the end")
    return p.parse_args()


def iou(a, b):
    """IoU of two boxes (x0, y0, x1, y1)."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cross(o, d, p):
    """z of (d - o) x (p - o): > 0 when p is on the right-hand side of o→d on screen (y down)."""
    return (d[0] - o[0]) * (p[1] - o[1]) - (d[1] - o[1]) * (p[0] - o[0])


def crossing(a, b, p0, p1):
    """'a_to_b', 'b_to_a' or None for the move p0→p1 against the segment a-b."""
    s0, s1 = cross(a, b, p0), cross(a, b, p1)
    if s0 * s1 >= 0:
        return None  # same side (or touching the line): no crossing
    # the move crosses the infinite line; it must pass between a and b
    if cross(p0, p1, a) * cross(p0, p1, b) > 0:
        return None
    return "a_to_b" if s1 > 0 else "b_to_a"


class Tracker:
    """Greedy IoU tracker: each detection takes the best free track with IoU >= MATCH_IOU."""

    def __init__(self):
        self.tracks = {}  # id -> {"box", "unseen"}
        self.next_id = 1

    def update(self, boxes):
        """boxes in score order; returns [(track_id, box, previous_box_or_None)]."""
        taken = set()
        out = []
        for box in boxes:
            best, best_iou = None, MATCH_IOU
            for tid, t in self.tracks.items():
                if tid in taken:
                    continue
                v = iou(box, t["box"])
                if v >= best_iou:
                    best, best_iou = tid, v
            if best is None:
                best = self.next_id
                self.next_id += 1
                self.tracks[best] = {"box": box, "unseen": 0}
                prev = None
            else:
                prev = self.tracks[best]["box"]
            taken.add(best)
            self.tracks[best]["box"] = box
            self.tracks[best]["unseen"] = 0
            out.append((best, box, prev))
        for tid in list(self.tracks):
            if tid not in taken:
                self.tracks[tid]["unseen"] += 1
                if self.tracks[tid]["unseen"] >= MAX_UNSEEN:
                    del self.tracks[tid]
        return out


def connect(host, port, client_id):
    connected = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        connected.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_connect = on_connect
    client.connect(host, port, keepalive=30)
    client.loop_start()
    if not connected.wait(10) or result["rc"].is_failure:
        sys.exit(f"python_pipeline: cannot connect to the MQTT broker {host}:{port}: "
                 f"{result.get('rc', 'no CONNACK within 10 s')}")
    return client


def main():
    args = parse_args()
    host, _, port = args.broker.rpartition(":")
    ax, ay, bx, by = (float(v) for v in args.line.split(","))
    a, b = (ax, ay), (bx, by)

    t = time.perf_counter()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    model_load_s = time.perf_counter() - t
    outputs = ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]

    client = connect(host, int(port), f"{args.device}-{time.time_ns()}")
    topic = f"{args.topic_prefix}/{args.device}/events/line_crossed"

    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        sys.exit(f"python_pipeline: OpenCV cannot open the video {args.video}")

    tracker = Tracker()
    sent = []
    frames = 0
    start = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        img = cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[np.newaxis]  # [1, 300, 300, 3] uint8
        boxes, scores, classes, num = session.run(outputs, {"image_tensor:0": img})

        persons = []
        for i in range(int(num[0])):
            if int(classes[0, i]) == PERSON and scores[0, i] >= SCORE_MIN:
                y0, x0, y1, x1 = (float(v) for v in boxes[0, i])
                persons.append((x0, y0, x1, y1))

        for tid, box, prev in tracker.update(persons):
            if prev is None:
                continue
            p0 = ((prev[0] + prev[2]) / 2, prev[3])  # bottom centre: the feet
            p1 = ((box[0] + box[2]) / 2, box[3])
            direction = crossing(a, b, p0, p1)
            if direction:
                event = {"type": "line_crossed", "device": args.device, "rule": args.line_name,
                         "direction": direction, "track": tid, "frame": frames,
                         "time": time.time(), "point": [round(p1[0], 4), round(p1[1], 4)]}
                sent.append(client.publish(topic, json.dumps(event), qos=1))
        frames += 1
    seconds = time.perf_counter() - start
    cap.release()

    deadline = time.monotonic() + args.ack_timeout
    for info in sent:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    acked = sum(1 for info in sent if info.is_published())
    client.disconnect()
    client.loop_stop()

    print(json.dumps({
        "frames": frames,
        "events": len(sent),
        "acked": acked,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "model_load_s": round(model_load_s, 3),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
    }))
    if frames == 0:
        sys.exit("python_pipeline: no frame could be read from the video")
    if acked < len(sent):
        sys.exit(f"python_pipeline: the broker acknowledged only {acked} of {len(sent)} events "
                 f"within {args.ack_timeout} s")


if __name__ == "__main__":
    main()
