#!/usr/bin/env python3
"""The SDK's structure, measured from the source: module and crate cycles, imports that run back
up the layers, the longest files and functions.

    python3 .ci/structure.py            # report; exit 1 when a limit is broken
    python3 .ci/structure.py --json     # the figures, for tests

A module is a crate's top-level module (`pipeline/` with all its files is one module; `lib.rs`
is the crate's facade, `main.rs` the binary's). An import is any `crate::m`, `super::` (leaving
the module), `ocellus_core::m`, `ocellus_delivery::m` or `ocellus::m` path outside comments and
tests. The layers are the intended order below (docs/architecture.md draws it): an import from a
module to one in a higher layer runs back up. Test code (`tests.rs` files, `#[cfg(test)]`
modules, `tests/`) is left out of every figure.
"""
import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# crate -> (source dir, its modules from the bottom layer up; modules on one line share a layer)
CRATES = {
    "ocellus_core": ("sdk/core/src", [
        ["error"],
        ["frame", "detection", "histogram", "ratelimit", "redact"],
        ["nms", "appearance"],
        ["track"],
        ["rules", "mot"],
        ["event", "eval"],
        ["source", "inference", "sink"],
        ["tile"],
        ["lib"],
    ]),
    "ocellus_delivery": ("sdk/delivery/src", [
        ["error"],
        ["transport", "spool"],
        ["cloud"],
        ["publish"],
        ["lib"],
    ]),
    "ocellus": ("sdk/vision/src", [
        ["paths"],
        ["runtime"],
        ["error"],
        ["anchors"],
        ["card"],
        ["manifest"],
        ["preprocess"],
        ["infer"],
        ["imx500"],
        ["source"],
        ["conformance", "accuracy"],
        ["annotate"],
        ["snapshot"],
        ["pipeline"],
        ["health"],
        ["config"],
        ["agent"],
        ["deploy"],
        ["lib"],
    ]),
    "ocellus_cli": ("sdk/cli/src", [
        ["procinfo", "broker", "args"],
        ["detect", "model_cmd", "sim", "tracks"],
        ["run"],
        ["annotate"],
        ["setup"],
        ["bench", "bench_delivery", "bench_imx500", "compare", "eval"],
        ["main"],
    ]),
}
CRATE_LAYER = {"ocellus_core": 0, "ocellus_delivery": 1, "ocellus": 2, "ocellus_cli": 3}
MAX_FILE_LINES = 1200
MAX_FN_LINES = 120
MAX_BACK_IMPORTS = 2


def rust_files(src):
    for dirpath, _, names in os.walk(os.path.join(ROOT, src)):
        for n in sorted(names):
            if n.endswith(".rs") and n != "tests.rs":
                yield os.path.join(dirpath, n)


def module_of(src, path):
    rel = os.path.relpath(path, os.path.join(ROOT, src))
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_lines(path):
    """The file's lines up to its test module, with comments blanked."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#[cfg(test)]"):
                break
            out.append(re.sub(r"//.*", "", line.rstrip("\n")))
    return out


def root_names(src):
    """Names `lib.rs`/`main.rs` re-exports from a module: `pub use module::{A, B}`."""
    names = {}
    for root in ("lib.rs", "main.rs"):
        p = os.path.join(ROOT, src, root)
        if not os.path.exists(p):
            continue
        text = " ".join(code_lines(p))
        for m in re.finditer(r"pub use (\w+)::(\{[^}]*\}|\w+)", text):
            for name in re.findall(r"\w+", m.group(2)):
                names[name] = m.group(1)
    return names


def imports():
    """(crate, module) -> set of (crate, module) it imports."""
    reexports = {crate: root_names(src) for crate, (src, _) in CRATES.items()}
    modules = {crate: {m for layer in layers for m in layer} for crate, (_, layers) in CRATES.items()}
    graph = {}
    for crate, (src, _) in CRATES.items():
        for path in rust_files(src):
            me = (crate, module_of(src, path))
            deps = graph.setdefault(me, set())
            nested = os.path.dirname(os.path.relpath(path, os.path.join(ROOT, src))) != ""
            for line in code_lines(path):
                for m in re.finditer(r"\b(crate|ocellus_core|ocellus_delivery|ocellus)::(\w+)", line):
                    target_crate = crate if m.group(1) == "crate" else m.group(1)
                    if target_crate not in CRATES:
                        continue
                    name = m.group(2)
                    if name in modules[target_crate]:
                        target = name
                    elif name in reexports[target_crate]:
                        target = reexports[target_crate][name]
                        if target not in modules[target_crate]:
                            continue
                    else:
                        # an item defined in the crate root itself
                        target = "main" if target_crate == "ocellus_cli" else "lib"
                    if (target_crate, target) != me:
                        deps.add((target_crate, target))
                # `super::` from a top-level file reaches the crate root
                if "super::" in line and not nested and me[1] not in ("lib", "main"):
                    deps.add((crate, "lib"))
    return graph


def layer_of(node):
    crate, module = node
    for i, layer in enumerate(CRATES[crate][1]):
        if module in layer:
            return i
    return None


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def back_imports(graph):
    out = []
    for src, deps in graph.items():
        for dst in deps:
            if src[0] != dst[0]:
                if CRATE_LAYER[dst[0]] > CRATE_LAYER[src[0]]:
                    out.append((src, dst))
                continue
            a, b = layer_of(src), layer_of(dst)
            if a is None or b is None:
                out.append((src, dst))
            elif b > a:
                out.append((src, dst))
    return sorted(out)


def unknown_modules(graph):
    return sorted(n for n in graph if layer_of(n) is None)


FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"C\"\s+)?fn\s+(\w+)")


def functions(path):
    lines = code_lines(path)
    out = []
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            s = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j])
            s = re.sub(r"'(\\.|[^'\\])'", "''", s)
            if not started and ";" in s and "{" not in s:
                break  # a declaration without a body
            depth += s.count("{") - s.count("}")
            started = started or "{" in s
            if started and depth <= 0:
                out.append((m.group(7), j - i + 1, i + 1))
                break
            j += 1
        i += 1
    return out


def main():
    graph = imports()
    files, fns = [], []
    for crate, (src, _) in CRATES.items():
        for path in rust_files(src):
            rel = os.path.relpath(path, ROOT)
            files.append((len(code_lines(path)), rel))
            fns.extend((n, name, f"{rel}:{line}") for name, n, line in functions(path))
    files.sort(reverse=True)
    fns.sort(reverse=True)
    report = {
        "modules": len(graph),
        "cycles": [[f"{c}::{m}" for c, m in comp] for comp in cycles(graph)],
        "back_imports": [f"{a[0]}::{a[1]} -> {b[0]}::{b[1]}" for a, b in back_imports(graph)],
        "unlayered": [f"{c}::{m}" for c, m in unknown_modules(graph)],
        "longest_files": [{"lines": n, "file": f} for n, f in files[:5]],
        "longest_functions": [{"lines": n, "fn": name, "at": at} for n, name, at in fns[:5]],
    }
    broken = []
    if report["cycles"]:
        broken.append(f"cycles: {report['cycles']}")
    if len(report["back_imports"]) > MAX_BACK_IMPORTS:
        broken.append(f"{len(report['back_imports'])} imports back up the layers (at most {MAX_BACK_IMPORTS})")
    if report["unlayered"]:
        broken.append(f"modules without a layer in .ci/structure.py: {report['unlayered']}")
    if files and files[0][0] > MAX_FILE_LINES:
        broken.append(f"{files[0][1]} has {files[0][0]} lines (at most {MAX_FILE_LINES})")
    if fns and fns[0][0] > MAX_FN_LINES:
        broken.append(f"fn {fns[0][1]} at {fns[0][2]} has {fns[0][0]} lines (at most {MAX_FN_LINES})")
    report["broken"] = broken
    if "--json" in sys.argv:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['modules']} modules in {len(CRATES)} crates")
        print(f"cycles: {len(report['cycles'])}")
        for c in report["cycles"]:
            print("  " + " <-> ".join(c))
        print(f"imports back up the layers: {len(report['back_imports'])}")
        for b in report["back_imports"]:
            print("  " + b)
        print("longest non-test files:")
        for f in report["longest_files"]:
            print(f"  {f['lines']:5} {f['file']}")
        print("longest functions:")
        for f in report["longest_functions"]:
            print(f"  {f['lines']:5} {f['fn']} ({f['at']})")
        for b in broken:
            print("BROKEN: " + b)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
