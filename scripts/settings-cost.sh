#!/usr/bin/env bash
# Prints the CPU time `akvsync validate` takes on each settings document that
# crates/akvsync/tests/testsuite/settings_cost.rs generates (just under the 1 MiB cap, one per list
# kind: certificates, duplicate targets, hooks with filters, accounts, acls, connectTo
# hosts, unknown fields); issue 16, finding 6. Debug build unless PROFILE=release.
#
# Usage: scripts/settings-cost.sh [DIR]   (default DIR: target/settings-cost)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
dir="$(realpath -m "${1:-$target_dir/settings-cost}")"
profile="${PROFILE:-debug}"
flags=()
[ "$profile" = release ] && flags=(--release)
cargo build -p akvsync --quiet "${flags[@]}"
AKVSYNC_SETTINGS_COST_DIR="$dir" cargo test -p akvsync --quiet "${flags[@]}" --test testsuite \
  -- --ignored --exact settings_cost::write_generated_files --nocapture | grep -E '^[a-z-]+: [0-9]+ bytes' || true
bin="$target_dir/$profile/akvsync"
TIMEFORMAT='%U %S'
printf '%-16s %10s %8s %8s %5s\n' kind bytes user_s sys_s exit
for file in "$dir"/*.json; do
  kind="$(basename "$file" .json)"
  platform="$(cat "$dir/$kind.platform")"
  # `time` reports on stderr; the exit status follows on the next line.
  measured="$( { time "$bin" validate --platform "$platform" "$file" >/dev/null 2>&1; } 2>&1; echo "$?")"
  read -r user sys status <<<"$(echo $measured)"
  printf '%-16s %10s %8s %8s %5s\n' "$kind" "$(stat -c %s "$file")" "$user" "$sys" "$status"
done
