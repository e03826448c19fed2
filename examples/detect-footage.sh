#!/usr/bin/env bash
# Run the person detector on real footage: frames 0 and 400 of vtest.avi (decoded with ffmpeg),
# plus basketball1.png, with annotated PNGs written to ./ocellus-out/.
# Provisions ONNX Runtime, the model and the footage first (a no-op when they are there).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/models/provision.sh"
cache=${OCELLUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocellus}
out=${OUT:-$PWD/ocellus-out}
mkdir -p "$out/frames"
for n in 0 400; do
  ffmpeg -nostdin -v error -y -i "$cache/footage/vtest.avi" -vf "select=eq(n\,$n)" -vsync passthrough \
    -frames:v 1 "$out/frames/vtest-$n.png"
done
cd "$root"
cargo build --release --quiet
./target/release/ocellus detect --labels person --annotate "$out/annotated" \
  "$out/frames/vtest-0.png" "$out/frames/vtest-400.png" "$cache/footage/basketball1.png"
echo "annotated images: $out/annotated/"
