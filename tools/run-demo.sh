#!/usr/bin/env bash
# make demo: start the local AWS sandbox (seeded with the demo landing zone), run the whole job against it,
# print a summary and the CSV path, and stop the sandbox - leaving no process behind, whatever happens.
# Usage: tools/run-demo.sh [ansible-playbook args, e.g. --tags discovery]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
STATE="$ROOT/.sandbox"
ENV_FILE="$STATE/demo.env"
LOG="$STATE/sandbox.log"
mkdir -p "$STATE"
rm -f "$ENV_FILE"

cd "$ROOT"
"$VENV/bin/python" -m sandbox serve --env-file "$ENV_FILE" >"$LOG" 2>&1 &
SANDBOX_PID=$!
# Stop it however this script ends (success, failure, Ctrl-C): ask politely, then make sure.
trap '"$VENV/bin/python" -m sandbox stop --env-file "$ENV_FILE" >/dev/null 2>&1 || true; kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true' EXIT

if ! "$VENV/bin/python" -m sandbox wait --env-file "$ENV_FILE" --timeout 120; then
    echo "The sandbox did not start; its log ($LOG):" >&2
    cat "$LOG" >&2
    exit 1
fi
# shellcheck disable=SC1090  # written by the sandbox just now
source "$ENV_FILE"

echo "== Sandbox up at $AWS_ENDPOINT_URL; running: ansible-playbook site.yml -e lz=demo $*"
RUN_LOG="$STATE/last-run.log"
set +e
"$VENV/bin/ansible-playbook" site.yml -e lz=demo "$@" 2>&1 | tee "$RUN_LOG"
status="${PIPESTATUS[0]}"
set -e

echo
echo "== Demo summary"
grep -E '^# (scenario|  [0-9]{12}/)' "$LOG" | sed 's/^# /   /' || true
echo "   Failures injected on purpose by the sandbox (to show the gates working):"
grep -E '^#   fault ' "$LOG" | sed -e 's/^#   fault ami_fail:/     - AMI of/' -e 's/$/ ends "failed" -> the backup gate keeps it from patching/' \
    -e 's/^#   fault patch_fail:\(.*\) ends "failed" -> the backup gate keeps it from patching/     - AWS-RunPatchBaseline fails on\1 -> reported with its error, then rolled back to its verified AMI (rollback_on_failure)/' \
    -e 's/^#   fault /     - /' || true
report="$(sed -n 's/^CSV report: //p' "$RUN_LOG" | tail -n 1)"
if [[ -n "$report" ]]; then
    echo "   CSV report: $report"
fi
if [[ "$status" -ne 0 ]]; then
    echo "   ansible-playbook exited $status: Ansible's convention when a host failed - here the hosts failed on purpose above."
fi
exit "$status"
