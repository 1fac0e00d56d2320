#!/usr/bin/env bash
# Builds the cargo-fuzz targets with the installed toolchain (RUSTC_BOOTSTRAP=1, SPEC §10)
# and runs each for SECONDS over the committed seed corpus (fuzz/corpus/<target>, read-only)
# plus a scratch corpus under target/fuzz-corpus. A crash fails the script and leaves the
# reproducer in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 20 s, every target)
#        FUZZ_RUNS=N scripts/fuzz.sh 0 TARGET...  (N executions each instead of a time limit)
#        FUZZ_SANITIZER=none scripts/fuzz.sh ...  (no AddressSanitizer: 2-3x the executions for
#        targets that reach no unsafe code; built into target/fuzz-none)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(settings pkcs12 pem secret_response identity_response handler_status seqno challenge output_templates)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir=../target/fuzz
[ "$sanitizer" = address ] || target_dir="../target/fuzz-$sanitizer"
cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
for target in "${targets[@]}"; do
  mkdir -p "../target/fuzz-corpus/$target"
  log="../target/fuzz-corpus/$target.log"
  status=0
  limit=(-max_total_time="$seconds")
  [ -z "${FUZZ_RUNS:-}" ] || limit=(-runs="$FUZZ_RUNS")
  started=$SECONDS
  cargo fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" "$target" "../target/fuzz-corpus/$target" "corpus/$target" -- \
    "${limit[@]}" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  echo "$target: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions in $((SECONDS - started)) s"
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz target $target failed (exit $status): reproducer in fuzz/artifacts/$target/"
    exit 1
  fi
done
