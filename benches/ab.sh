#!/usr/bin/env bash
# A/B benchmark: ocellus (A) against the obvious Python pipeline (B) on the same footage and model.
# See benches/README.md, or run `benches/ab.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: benches/ab.sh [--rounds N] [--ocellus-card CARD] [--tiles GRID] [--no-build] [--json] [--help]

Compares ocellus with the obvious Python pipeline (benches/python_pipeline.py) on this machine:
the same footage (vtest.avi, all 795 frames), the same SSD-MobileNet-v2-COCO weights, the same
ONNX Runtime version (1.31.1, default threads, graph optimisation ALL), the same counting line, the
same local mosquitto broker. Runs alternate A/B/A/B so that machine load hits both sides alike.

  A = target/release/ocellus run --config <temp config>   fps from its summary line "frames: ..."
  B = <venv>/bin/python benches/python_pipeline.py          fps from its JSON line

Both figures are frames / seconds from the first frame read to the last frame's events handed to
MQTT, model loading and the final wait for acknowledgements excluded.

Options:
  --rounds N            rounds of A then B (default 3)
  --ocellus-card CARD   the model card ocellus runs, relative to the repository root or absolute
                        (default models/ssd-mobilenet-v2-coco-person-int8.toml, the detector the
                        demo runs; the fp32 cut card is models/ssd-mobilenet-v2-coco-cut.toml and
                        the full-graph card models/ssd-mobilenet-v2-coco.toml). The Python side always runs the
                        full-graph model file $CACHE/models/ssd_mobilenet_v2_coco_2018_03_29.onnx.
  --tiles GRID          the ocellus run's model.tiles (default: the config default, "2x1"; "1x1"
                        runs the whole frame once, as the Python side does)
  --no-build            do not run cargo build --release; use target/release/ocellus as it is
                        (e.g. while the working tree does not compile)
  --json                print the result as one JSON line on stdout (the text goes to stderr)
  --help                this text

What it prints: one row per run: fps, frames processed, events published, model load seconds, and
"others": the average number of cores that other processes kept busy during the run (about 0 on a
quiet machine; a warning is printed when it exceeds 0.2). Then the median fps of each side, the
ratio of the medians (ocellus / python) and the median of the per-round ratios. With --json, the
same as one JSON object on stdout: ocellus_fps, python_fps (lists, one per round),
ocellus_median_fps, python_median_fps, ratio, median_round_ratio, round_ratios, and per-run
frames, events, load_s and others_cores of each side.

What it needs and does:
  - models/provision.sh run first: $CACHE/models/ssd_mobilenet_v2_coco_2018_03_29.onnx, the model
    file of the ocellus card, and $CACHE/footage/vtest.avi, where CACHE is $OCELLUS_CACHE, else
    $XDG_CACHE_HOME/ocellus, else ~/.cache/ocellus (the same as ocellus and provision.sh)
  - python3 with venv; a virtualenv at $CACHE/bench-venv with packages pinned from PyPI
    (onnxruntime==1.31.1, opencv-python-headless==4.12.0.88, paho-mqtt==2.1.0, numpy==2.2.6),
    created on the first run and reused afterwards (delete the directory to rebuild it)
  - cargo build --release (a no-op when the build is up to date; skipped with --no-build)
  - mosquitto (Debian package): started on 127.0.0.1 on a free port with a temporary config and
    stopped when the script exits, whatever the outcome
Exit status: 0 when every run succeeded; 1 when something is missing or a run failed (the message
says what, with the failing run's stderr); 2 for a bad option.
EOF
}

ROUNDS=3
CARD=models/ssd-mobilenet-v2-coco-person-int8.toml
JSON=0
BUILD=1
TILES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) [ $# -ge 2 ] || { echo "ab.sh: --rounds needs a number" >&2; exit 2; }; ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --ocellus-card) [ $# -ge 2 ] || { echo "ab.sh: --ocellus-card needs a path" >&2; exit 2; }; CARD=$2; shift 2 ;;
    --ocellus-card=*) CARD=${1#*=}; shift ;;
    --tiles) [ $# -ge 2 ] || { echo "ab.sh: --tiles needs a grid such as 2x1" >&2; exit 2; }; TILES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ab.sh: unknown option $1 (see benches/ab.sh --help)" >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: --rounds must be a whole number of at least 1, got '$ROUNDS'" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${OCELLUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocellus}
MODELS=${OCELLUS_MODELS_DIR:-$CACHE/models}
VENV=$CACHE/bench-venv
FULL_MODEL=$MODELS/ssd_mobilenet_v2_coco_2018_03_29.onnx
VIDEO=$CACHE/footage/vtest.avi
OCELLUS=$ROOT/target/release/ocellus
# the counting line of `ocellus demo` (demo_rules() in sdk/cli/src/run.rs): vertical, across the walkway
LINE_A=(0.75 0.3)
LINE_B=(0.75 0.75)
PINS=(onnxruntime==1.31.1 opencv-python-headless==4.12.0.88 paho-mqtt==2.1.0 numpy==2.2.6)

# with --json, stdout carries only the JSON line
if [ $JSON = 1 ]; then exec 3>&1 1>&2; fi
say() { printf '%s\n' "$*"; }
die() { printf 'ab.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
case "$CARD" in /*) ;; *) CARD=$ROOT/$CARD ;; esac
[ -f "$CARD" ] || die "model card $CARD not found; pass an existing card, e.g. --ocellus-card models/ssd-mobilenet-v2-coco.toml"
card_file=$(awk '/^\[/ { exit } /^file[ ]*=/ { sub(/^[^=]*=[ ]*"/, ""); sub(/".*$/, ""); print; exit }' "$CARD")
[ -n "$card_file" ] || die "model card $CARD has no top-level file = \"...\" key"
[ -f "$MODELS/$card_file" ] || die "$MODELS/$card_file (the model of $CARD) is missing; run: models/provision.sh"
[ -f "$FULL_MODEL" ] || die "$FULL_MODEL is missing; run: models/provision.sh"
[ -f "$VIDEO" ] || die "$VIDEO is missing; run: models/provision.sh"
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || die "mosquitto is not installed; run: models/provision.sh (or apt-get install mosquitto)"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
command -v python3 >/dev/null || die "python3 is not installed; run: apt-get install python3 python3-venv"
if [ $BUILD = 1 ]; then
  command -v cargo >/dev/null || die "cargo is not on PATH; install Rust (https://rustup.rs) or add ~/.cargo/bin to PATH"
fi

# ---------------------------------------------------------------- Python virtualenv (once)
stamp=$VENV/.ab-pins
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${PINS[*]}" ]; then
  say "venv:    $VENV (${PINS[*]})"
else
  say "venv:    creating $VENV with ${PINS[*]}"
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed; run: apt-get install python3-venv"
  "$VENV/bin/python" -m pip install --quiet --only-binary=:all: "${PINS[@]}" \
    || die "pip install ${PINS[*]} into $VENV failed (is PyPI reachable?)"
  printf '%s' "${PINS[*]}" >"$stamp"
fi
PY=$VENV/bin/python

# ---------------------------------------------------------------- build
if [ $BUILD = 1 ]; then
  say "build:   cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) \
    || die "cargo build --release failed (see above); fix the build, or pass --no-build to use the existing $OCELLUS"
else
  say "build:   skipped (--no-build): $OCELLUS from $(date -r "$OCELLUS" '+%F %T')"
fi
[ -x "$OCELLUS" ] || die "$OCELLUS does not exist; run: cargo build --release"

# ---------------------------------------------------------------- broker
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ocellus-ab.XXXXXX")
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$TMP/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
user $(id -un)
EOF
"$MOSQUITTO" -c "$TMP/mosquitto.conf" 2>"$TMP/mosquitto.log" &
BROKER_PID=$!
for _ in $(seq 50); do
  (exec 9<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$BROKER_PID" 2>/dev/null || die "mosquitto did not start: $(tail -n 5 "$TMP/mosquitto.log")"
  sleep 0.1
done
(exec 9<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || die "mosquitto is not listening on 127.0.0.1:$PORT after 5 s: $(tail -n 5 "$TMP/mosquitto.log")"
say "broker:  mosquitto on 127.0.0.1:$PORT"

# ---------------------------------------------------------------- ocellus config
TILES_LINE=""
[ -z "$TILES" ] || TILES_LINE="tiles = \"$TILES\""
# absolute paths: relative ones would be relative to this temporary directory
ocellus_config() { # QUEUE_DIR
  cat <<EOF
[device]
id = "bench-ocellus"

[source]
kind = "video"
path = "$VIDEO"

[model]
card = "$CARD"
threshold = 0.5
labels = ["person"]
$TILES_LINE

[tracker]
match_iou = 0.3
max_lost_frames = 10

[[rules.line]]
name = "walkway"
a = [${LINE_A[0]}, ${LINE_A[1]}]
b = [${LINE_B[0]}, ${LINE_B[1]}]
labels = ["person"]

[mqtt]
url = "mqtt://127.0.0.1:$PORT"
topic_prefix = "bench"

[queue]
dir = "$1"
EOF
}
ocellus_config "$TMP/queue-check" >"$TMP/check.toml"
"$OCELLUS" check-config "$TMP/check.toml" >"$TMP/check.log" 2>&1 \
  || die "ocellus check-config refused the generated config: $(cat "$TMP/check.log")"

# ---------------------------------------------------------------- runs
say "card:    ${CARD#"$ROOT"/} (ocellus); $(basename "$FULL_MODEL") (python)"
say "line:    walkway a=(${LINE_A[*]}) b=(${LINE_B[*]})"
say ""
printf '%-6s %-8s %8s %7s %7s %8s %7s\n' round side fps frames events "load(s)" "others"
RESULTS=$TMP/results.tsv
: >"$RESULTS"
HZ=$(getconf CLK_TCK)
TIMEFORMAT='%3R %3U %3S'

# busy CPU time of the whole machine so far, in clock ticks (user nice system irq softirq steal)
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# timed DIR CMD...: run CMD with its output in DIR/stdout.log and DIR/stderr.log, and write to
# DIR/others the average number of cores that *other* processes kept busy meanwhile (machine busy
# time minus CMD's own CPU time, over the wall time): about 0 on a quiet machine
timed() {
  local dir=$1 b0 b1 rc=0; shift
  b0=$(busy_ticks)
  { time "$@" >"$dir/stdout.log" 2>"$dir/stderr.log"; } 2>"$dir/time" || rc=$?
  b1=$(busy_ticks)
  awk -v b="$((b1 - b0))" -v hz="$HZ" '{ o = (b / hz - $2 - $3) / $1; printf "%.2f\n", (o < 0 ? 0 : o) }' \
    "$dir/time" >"$dir/others"
  return $rc
}

row() { # ROUND SIDE FPS FRAMES EVENTS LOAD_S OTHERS
  printf '%-6s %-8s %8s %7s %7s %8s %7s\n' "$@"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

run_ocellus() { # ROUND
  local dir=$TMP/a$1 line fps frames events load
  mkdir -p "$dir"
  ocellus_config "$dir/queue" >"$dir/ocellus.toml"
  if ! timed "$dir" "$OCELLUS" run --config "$dir/ocellus.toml"; then
    tail -n 20 "$dir/stderr.log" >&2
    die "round $1: target/release/ocellus run --config $dir/ocellus.toml failed (its stderr above)"
  fi
  line=$(grep -m1 '^frames:' "$dir/stderr.log") || die "round $1: no 'frames:' summary line in ocellus's stderr"
  frames=$(sed -E 's/^frames: +([0-9]+) processed at ([0-9.]+) fps.*/\1/' <<<"$line")
  fps=$(sed -E 's/^frames: +([0-9]+) processed at ([0-9.]+) fps.*/\2/' <<<"$line")
  events=$(grep -m1 '^events:' "$dir/stderr.log" | awk '{ print $2 }')
  load=$(grep -m1 '^start-up:' "$dir/stderr.log" | awk '{ printf "%.2f", $2 / 1000 }')
  row "$1" ocellus "$fps" "$frames" "${events:-0}" "${load:-0}" "$(cat "$dir/others")"
}

run_python() { # ROUND
  local dir=$TMP/b$1 fields
  mkdir -p "$dir"
  if ! timed "$dir" "$PY" "$ROOT/benches/python_pipeline.py" --model "$FULL_MODEL" --video "$VIDEO" \
      --broker "127.0.0.1:$PORT" --line "${LINE_A[0]},${LINE_A[1]},${LINE_B[0]},${LINE_B[1]}"; then
    tail -n 20 "$dir/stderr.log" >&2
    die "round $1: benches/python_pipeline.py failed (its stderr above)"
  fi
  fields=$("$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); print(r["fps"], r["frames"], r["events"], "%.2f" % r["model_load_s"])' \
    "$(tail -n 1 "$dir/stdout.log")") || die "round $1: no JSON result line from benches/python_pipeline.py"
  # shellcheck disable=SC2086 # four words on purpose
  row "$1" python $fields "$(cat "$dir/others")"
}

for round in $(seq "$ROUNDS"); do
  run_ocellus "$round"
  run_python "$round"
done

# ---------------------------------------------------------------- summary
"$PY" - "$RESULTS" "$JSON" "${CARD#"$ROOT"/}" <<'EOF' >"$TMP/summary"
import json, statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
a = [float(r[2]) for r in rows if r[1] == "ocellus"]
b = [float(r[2]) for r in rows if r[1] == "python"]
ma, mb = statistics.median(a), statistics.median(b)
per_round = [x / y for x, y in zip(a, b)]
result = {
    "rounds": len(a),
    "ocellus_card": sys.argv[3],
    "ocellus_fps": a,
    "python_fps": b,
    "ocellus_median_fps": round(ma, 2),
    "python_median_fps": round(mb, 2),
    "ratio": round(ma / mb, 3),
    "median_round_ratio": round(statistics.median(per_round), 3),
    "round_ratios": [round(r, 3) for r in per_round],
    "ocellus_frames": [int(r[3]) for r in rows if r[1] == "ocellus"],
    "python_frames": [int(r[3]) for r in rows if r[1] == "python"],
    "ocellus_events": [int(r[4]) for r in rows if r[1] == "ocellus"],
    "python_events": [int(r[4]) for r in rows if r[1] == "python"],
    "ocellus_load_s": [float(r[5]) for r in rows if r[1] == "ocellus"],
    "python_load_s": [float(r[5]) for r in rows if r[1] == "python"],
    "ocellus_others_cores": [float(r[6]) for r in rows if r[1] == "ocellus"],
    "python_others_cores": [float(r[6]) for r in rows if r[1] == "python"],
}
print()
print(f"median fps:  ocellus {ma:.1f}, python {mb:.1f}")
print(f"ratio ocellus/python: {result['ratio']:.2f} (ratio of the medians); "
      f"{result['median_round_ratio']:.2f} (median of the per-round ratios {result['round_ratios']})")
if set(result["ocellus_frames"]) != set(result["python_frames"]):
    print(f"warning: the sides processed different numbers of frames: "
          f"ocellus {result['ocellus_frames']}, python {result['python_frames']}")
busy = max(float(r[6]) for r in rows)
if busy > 0.2:
    print(f"warning: other processes kept up to {busy} cores busy during a run (column 'others'): "
          f"the figures are disturbed; run again on a quiet machine")
if sys.argv[2] == "1":
    print("JSON " + json.dumps(result))
EOF
grep -v '^JSON ' "$TMP/summary"
if [ $JSON = 1 ]; then sed -n 's/^JSON //p' "$TMP/summary" >&3; fi
exit 0
