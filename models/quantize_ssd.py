"""Make the INT8 detector from the cut SSD: optionally slice the class head down to a few classes,
then quantise statically with ONNX Runtime's tools (QDQ, per-channel int8 weights, uint8
activations), calibrated on raw 300x300 RGB frames.

    python quantize_ssd.py FP32.onnx OUT.onnx --calibration DIR [--keep-classes 0,1]
                           [--fp32-nodes none|first|heads|first+heads]
                           [--method minmax|percentile|entropy]

FP32.onnx   the cut SSD (models/ssd-mobilenet-v2-coco-cut.toml): input Preprocessor/sub:0
            [1,300,300,3] normalised to [-1, 1]; outputs Squeeze:0 [1,1917,4] box encodings,
            concat_1:0 [1,1917,91] class logits, Concatenate/concat:0 [1917,4] anchors
DIR         calibration frames: *.rgb files of 300*300*3 bytes (RGB, rows top-down), made by
            models/provision.sh with ffmpeg from images that are not the evaluation footage
--keep-classes
            class columns to keep (0 = background); the class predictor's convolutions lose the
            output channels of every other class, so they cost that much less to run, and the
            logits output becomes [1,1917,len(keep)]
--fp32-nodes
            `first`: leave the first convolution in fp32 (what provisioning does); `heads`: leave
            the box and class predictor convolutions in fp32 (the layers whose outputs the decoder
            reads directly); `first+heads`: both; `none`: quantise every convolution
--method    how activation ranges are calibrated (default minmax; percentile and entropy keep a
            histogram of every activation: slower, and several GB of memory)

docs/performance.md has what each choice measured against the fp32 model.

Writes nothing but OUT.onnx. Needs onnx, onnxruntime and numpy (models/quantizer-requirements.txt).
"""

import argparse
import glob
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

SIDE = 300
LOGITS = "concat_1:0"
BOXES = "Squeeze:0"
INPUT = "Preprocessor/sub:0"


def fail(msg):
    print(f"quantize_ssd.py: {msg}", file=sys.stderr)
    sys.exit(1)


def producers(graph):
    return {o: n for n in graph.node for o in n.output}


def head_convs(graph, output):
    """The Conv nodes that feed `output` through shape-only ops (Reshape, Transpose, Concat)."""
    prod = producers(graph)
    found, todo, seen = [], [output], set()
    while todo:
        name = todo.pop()
        node = prod.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            found.append(node)
        elif node.op_type in ("Reshape", "Transpose", "Concat", "Squeeze"):
            # only the data input; shape constants are initializers
            todo.extend(node.input if node.op_type == "Concat" else node.input[:1])
        else:
            fail(f"unexpected {node.op_type} node {node.name} between a predictor and {output}")
    return found


def keep_classes(model, keep, classes=91):
    """Slice the class predictor to the class columns in `keep`."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    convs = head_convs(g, LOGITS)
    if len(convs) != 6:
        fail(f"expected the 6 class-predictor convolutions of SSD-MobileNet-v2, found {len(convs)}")
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for conv in convs:
        w_name, b_name = conv.input[1], conv.input[2]
        for name in (w_name, b_name):
            if len(consumers.get(name, [])) != 1:
                fail(f"initializer {name} of {conv.name} is shared; cannot slice it")
        w = numpy_helper.to_array(inits[w_name])
        b = numpy_helper.to_array(inits[b_name])
        if w.shape[0] % classes:
            fail(f"{conv.name} has {w.shape[0]} output channels, not a multiple of {classes}")
        anchors = w.shape[0] // classes
        # TF's predictor lays its channels out anchor-major: channel = anchor * classes + class
        idx = [a * classes + c for a in range(anchors) for c in keep]
        inits[w_name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w[idx]), w_name))
        inits[b_name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(b[idx]), b_name))
    # the Reshape shapes [1, -1, classes] on the logits path become [1, -1, len(keep)]
    prod = producers(g)
    reshaped = 0
    for conv in convs:
        todo = [conv.output[0]]
        while todo:
            name = todo.pop()
            for n in consumers.get(name, []):
                if n.op_type == "Reshape":
                    s = numpy_helper.to_array(inits[n.input[1]])
                    if s[-1] == classes:
                        s = s.copy()
                        s[-1] = len(keep)
                        inits[n.input[1]].CopyFrom(numpy_helper.from_array(s, n.input[1]))
                        reshaped += 1
                if n.op_type in ("Reshape", "Transpose") and n.output[0] != LOGITS:
                    todo.append(n.output[0])
    if reshaped == 0:
        fail("found no Reshape to the class count on the logits path")
    del prod
    # shapes inferred from the fp32 graph are stale now: let the quantiser infer them again
    del g.value_info[:]
    for o in g.output:
        if o.name == LOGITS:
            dims = o.type.tensor_type.shape.dim
            if len(dims) == 3:
                dims[2].dim_value = len(keep)
    return model


class Frames:
    """The calibration frames, normalised as the card says: 2 * pixel / 255 - 1, NHWC."""

    def __init__(self, files):
        self.files = list(files)

    def get_next(self):
        if not self.files:
            return None
        f = self.files.pop(0)
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size != SIDE * SIDE * 3:
            fail(f"{f}: {raw.size} bytes, expected {SIDE * SIDE * 3} (300x300 RGB)")
        x = raw.reshape(1, SIDE, SIDE, 3).astype(np.float32) * (2.0 / 255.0) - 1.0
        return {INPUT: x}

    def rewind(self):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fp32")
    ap.add_argument("out")
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--keep-classes", default="")
    ap.add_argument("--fp32-nodes", choices=["heads", "first", "first+heads", "none"], default="none")
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    a = ap.parse_args()

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    files = sorted(glob.glob(os.path.join(a.calibration, "*.rgb")))
    if len(files) < 10:
        fail(f"{a.calibration} has {len(files)} calibration frames (*.rgb); need at least 10")
    model = onnx.load(a.fp32)
    if a.keep_classes:
        keep = [int(c) for c in a.keep_classes.split(",")]
        model = keep_classes(model, keep)
    g = model.graph
    exclude = []
    if "heads" in a.fp32_nodes:
        exclude += [n.name for n in head_convs(g, LOGITS) + head_convs(g, BOXES)]
    if "first" in a.fp32_nodes:
        exclude += [n.name for n in g.node if n.op_type == "Conv"][:1]
    with tempfile.TemporaryDirectory() as tmp:
        sliced = os.path.join(tmp, "sliced.onnx")
        pre = os.path.join(tmp, "pre.onnx")
        onnx.save(model, sliced)
        quant_pre_process(sliced, pre, skip_symbolic_shape=True)
        quantize_static(
            pre,
            a.out,
            Frames(files),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[a.method],
            nodes_to_exclude=exclude,
            # the shape-only ops at the end carry the decoder's inputs: keep them fp32
            op_types_to_quantize=["Conv", "Add", "Mul", "Clip", "Relu"],
        )
    print(f"quantize_ssd.py: wrote {a.out} ({len(files)} calibration frames, classes {a.keep_classes or 'all'}, fp32 nodes: {len(exclude)})")


if __name__ == "__main__":
    main()
