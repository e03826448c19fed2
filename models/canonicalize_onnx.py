"""Rewrite an ONNX model into a canonical form, so that a conversion that is not byte-for-byte
reproducible (tf2onnx names nodes from counters and iterates over sets of objects) yields the
same file, and so the same sha256, on every machine.

Counter-numbered unknown dimensions (`unk__N`) are cleared first. Every value is renamed after a hash of what computes it (operator, attributes, canonical input
names), nodes are ordered topologically with ties broken by that hash, and initializers are
named after a hash of their contents. Graph inputs and outputs keep their names. Identical
nodes fed by identical inputs collapse into one (common subexpression elimination), which does
not change the results of a deterministic inference graph.

Usage: python canonicalize_onnx.py IN.onnx OUT.onnx   (needs the `onnx` package)
"""
import hashlib
import re
import sys

import onnx
from onnx import numpy_helper

UNK_DIM = re.compile(r"unk__\d+")
RANDOM_OPS = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"}


def h(*parts):
    d = hashlib.sha256()
    for p in parts:
        d.update(p if isinstance(p, bytes) else str(p).encode())
        d.update(b"\x00")
    return d.hexdigest()


def subgraphs(node):
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        for g in a.graphs:
            yield g


def free_names(g):
    """Names a graph uses but does not define (read from the enclosing scope)."""
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    used = set()
    for n in g.node:
        defined.update(o for o in n.output if o)
    for n in g.node:
        used.update(i for i in n.input if i)
        for sg in subgraphs(n):
            used.update(free_names(sg))
    used.update(o.name for o in g.output)
    return used - defined


def canon_graph(g, outer, prefix, top):
    names = dict(outer)
    for i, vi in enumerate(g.input):
        names[vi.name] = vi.name if top else f"{prefix}in{i}"
    # initializers: named by content, duplicates merged; one that is itself a graph output (a
    # constant the converter folded, such as an SSD's anchors) keeps the output's name
    inits = {}
    graph_outputs = {o.name for o in g.output} if top else set()
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        key = h("init", init.data_type, list(init.dims), arr.tobytes())
        new = init.name if init.name in graph_outputs else f"{prefix}c{key[:24]}"
        names[init.name] = new
        if new not in inits:
            t = onnx.TensorProto()
            t.CopyFrom(init)
            t.name = new
            t.ClearField("doc_string")
            inits[new] = t
    keep_outputs = {o.name for o in g.output} if top else set()

    pending = list(g.node)
    needs = []
    for n in pending:
        req = {i for i in n.input if i}
        for sg in subgraphs(n):
            req |= free_names(sg)
        needs.append(req)
    emitted, seen_keys = [], {}
    remaining = list(range(len(pending)))
    while remaining:
        ready = [i for i in remaining if needs[i] <= names.keys()]
        if not ready:
            missing = {x for i in remaining for x in needs[i] if x not in names}
            raise SystemExit(f"canonicalize: unresolved names {sorted(missing)[:5]} (graph is not topologically closed)")
        keyed = []
        for i in ready:
            n = pending[i]
            ins = [names[x] if x else "" for x in n.input]
            pre = h("pre", n.domain, n.op_type, *ins, len(n.output))
            attrs = []
            for a in sorted(n.attribute, key=lambda a: a.name):
                a2 = onnx.AttributeProto()
                a2.CopyFrom(a)
                a2.ClearField("doc_string")
                if a2.type == onnx.AttributeProto.GRAPH:
                    canon_graph(a2.g, names, f"{prefix}{pre[:8]}{a2.name}_", False)
                for j, sg in enumerate(a2.graphs):
                    canon_graph(sg, names, f"{prefix}{pre[:8]}{a2.name}{j}_", False)
                attrs.append(a2)
            key = h("node", pre, *[a.SerializeToString(deterministic=True) for a in attrs])
            if n.op_type in RANDOM_OPS:
                key = h(key, n.name)  # never merge random ops
            keyed.append((key, i, ins, attrs))
        keyed.sort(key=lambda k: k[0])
        for key, i, ins, attrs in keyed:
            n = pending[i]
            if key in seen_keys and not (keep_outputs & set(n.output)):
                for old, new in zip(n.output, seen_keys[key].output):
                    if old:
                        names[old] = new
                continue
            out = onnx.NodeProto()
            out.op_type, out.domain = n.op_type, n.domain
            out.name = f"{prefix}n{key[:24]}"
            out.input.extend(ins)
            for k, o in enumerate(n.output):
                if not o:
                    out.output.append("")
                    continue
                new = o if o in keep_outputs else f"{prefix}v{key[:24]}_{k}"
                names[o] = new
                out.output.append(new)
            out.attribute.extend(attrs)
            seen_keys[key] = out
            emitted.append(out)
        done = set(ready)
        remaining = [i for i in remaining if i not in done]

    def rename_vi(vis):
        out = []
        for vi in vis:
            if vi.name in names:
                v = onnx.ValueInfoProto()
                v.CopyFrom(vi)
                v.name = names[vi.name]
                v.ClearField("doc_string")
                out.append(v)
        return out

    new_inputs, new_outputs = rename_vi(g.input), rename_vi(g.output)
    value_info = sorted({v.name: v for v in rename_vi(g.value_info)}.values(), key=lambda v: v.name)
    del g.node[:]
    g.node.extend(emitted)
    del g.initializer[:]
    g.initializer.extend(inits[k] for k in sorted(inits))
    del g.input[:]
    g.input.extend(new_inputs)
    del g.output[:]
    g.output.extend(new_outputs)
    del g.value_info[:]
    g.value_info.extend(value_info)
    g.ClearField("doc_string")
    g.name = "main" if top else f"{prefix}graph"


def clear_unknown_dims(g):
    """tf2onnx names unknown dimensions `unk__<counter>`; the names are counter noise, not facts
    about the model, so they are cleared (the dimension stays unknown)."""
    def fix(vis):
        for vi in vis:
            if vi.type.HasField("tensor_type"):
                for d in vi.type.tensor_type.shape.dim:
                    if d.HasField("dim_param") and UNK_DIM.fullmatch(d.dim_param):
                        d.ClearField("dim_param")
    fix(g.input)
    fix(g.output)
    fix(g.value_info)
    for n in g.node:
        for sg in subgraphs(n):
            clear_unknown_dims(sg)


def main(src, dst):
    m = onnx.load(src)
    clear_unknown_dims(m.graph)
    canon_graph(m.graph, {}, "", True)
    opsets = sorted(((o.domain, o.version) for o in m.opset_import))
    del m.opset_import[:]
    for d, v in opsets:
        m.opset_import.add(domain=d, version=v)
    m.ClearField("doc_string")
    onnx.checker.check_model(m)
    with open(dst, "wb") as f:
        f.write(m.SerializeToString(deterministic=True))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
