#!/usr/bin/env bash
# Run the cargo-fuzz targets of ocellus, each for a bounded time. Not part of CI.
#
#   sdk/fuzz/run.sh                                # every target, 60 s each
#   FUZZ_SECONDS=300 sdk/fuzz/run.sh model_outputs # one target, 5 min
#
# Environment:
#   FUZZ_SECONDS  time per target (default 60)
#   FUZZ_JOBS     parallel libFuzzer processes per target (default 1; more uses -fork)
#   FUZZ_MAX_LEN  largest input libFuzzer makes, in bytes (default 16384)
#
# Installs what it needs when missing: a nightly toolchain (`--profile minimal`) and cargo-fuzz
# (from crates.io). Corpora grow in sdk/fuzz/corpus/<target>, crashes land in
# sdk/fuzz/artifacts/<target>, full logs in sdk/fuzz/logs/<target>.log (all git-ignored).
# Replay a crash (from sdk/fuzz): cargo +nightly fuzz run --fuzz-dir . <target> artifacts/<target>/crash-...
# Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"

seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-16384}
all=(config_parse frame_convert model_outputs imx500_tensor)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
    case " ${all[*]} " in
        *" $t "*) ;;
        *) echo "unknown target '$t'; the targets are: ${all[*]}" >&2; exit 2 ;;
    esac
done

# --- tools ---------------------------------------------------------------------------------
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing a nightly toolchain (cargo-fuzz needs it for the sanitizer flags)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# --- seeds ---------------------------------------------------------------------------------
# config_parse: the committed seeds and every TOML example of docs/config.md. imx500_tensor: a few
# small valid frames (64-byte lines) and a capture, written by the ignored test
# `imx500::tests::write_fuzz_seeds`; a FlatBuffers descriptor is not found from nothing. The other
# targets start from nothing: their inputs are structured (see the comments at the top of each
# target), so libFuzzer finds valid frames and tensors quickly without binary seeds.
mkdir -p corpus logs artifacts
for t in "${targets[@]}"; do mkdir -p "corpus/$t" "artifacts/$t"; done
if [ -d corpus/config_parse ]; then
    cp seeds/config_parse/*.toml corpus/config_parse/
    awk -v dir=corpus/config_parse '
        /^```toml/ { n++; file = sprintf("%s/docs-config-%02d.toml", dir, n); inside = 1; next }
        /^```/     { inside = 0; next }
        inside     { print > file }
    ' "$repo/docs/config.md"
fi
if [ -d corpus/imx500_tensor ]; then
    cp seeds/imx500_tensor/*.bin corpus/imx500_tensor/
fi

# --- build ---------------------------------------------------------------------------------
echo "== building the targets (nightly, address sanitizer, release with debug assertions)"
# --fuzz-dir: cargo-fuzz (0.13) otherwise takes the repository root's workspace for the project
# and looks for <root>/fuzz.
cargo +nightly fuzz build --fuzz-dir "$here"

# --- run -----------------------------------------------------------------------------------
failed=()
for t in "${targets[@]}"; do
    log="logs/$t.log"
    extra=()
    if [ "$t" = config_parse ]; then extra+=("-dict=seeds/config.dict"); fi
    # More than one process: libFuzzer's fork mode (one log, crashes still stop the run).
    if [ "$jobs" -gt 1 ]; then extra+=("-fork=$jobs" "-ignore_crashes=0"); fi
    echo
    echo "== $t: ${seconds}s, ${jobs} job(s), inputs up to ${max_len} bytes"
    set +e
    cargo +nightly fuzz run --fuzz-dir "$here" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" \
        -max_len="$max_len" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -malloc_limit_mb=512 \
        -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" \
        "${extra[@]}" >"$log" 2>&1
    status=$?
    set -e
    # libFuzzer's progress lines (`#N  pulse/REDUCE/NEW ... exec/s`), its final stats and, on a
    # finding, the panic message and where the input was written.
    grep -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)' "$log" | tail -n 4 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ] || grep -qE 'panicked at|ERROR: libFuzzer|SUMMARY: |Test unit written' "$log"; then
        echo "!! $t found something (exit $status):"
        grep -E -A3 'panicked at|ERROR: libFuzzer|SUMMARY: ' "$log" | head -n 20 || true
        grep -E 'Test unit written to' "$log" || true
        failed+=("$t")
    else
        echo "-- $t: nothing found"
    fi
done

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "== findings in: ${failed[*]} (logs in sdk/fuzz/logs, inputs in sdk/fuzz/artifacts)"
    exit 1
fi
echo "== no findings (${targets[*]}, ${seconds}s each)"
