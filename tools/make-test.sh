#!/usr/bin/env bash
# make test: every tier, on two cores in under 20 minutes.
#
# The unit tests run first, alone (3 workers keep both cores busy). Then the integration tests run (3 workers), and
# beside them the checks that run in one process (yamllint and ansible-lint, ansible-test sanity, molecule: about one
# core for 4-5 minutes): the integration workers leave part of the second core idle while the sandbox's clock runs, and
# the checks take it. The checks' output is kept in a log and printed when the integration tests end, so the two never
# interleave. make test fails when any tier failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

MAKE="${MAKE:-make}"
mkdir -p .cache
log=.cache/make-test-checks.log

"$MAKE" --no-print-directory unit || exit 1

# Its own process group, so that an interrupted make test stops the checks too; --keep-going, so that a sanity failure
# does not hide what molecule would say.
setsid "$MAKE" --no-print-directory --keep-going lint sanity molecule >"$log" 2>&1 &
checks=$!
trap 'kill -TERM -- "-$checks" 2>/dev/null; exit 130' INT TERM

"$MAKE" --no-print-directory integration
integration_rc=$?

wait "$checks"
checks_rc=$?
trap - INT TERM

echo "==== lint, sanity, molecule (they ran beside the integration tests; log: $log) ===="
cat "$log"
echo "==== make test: integration rc=$integration_rc; lint, sanity, molecule rc=$checks_rc ===="
if ((integration_rc != 0 || checks_rc != 0)); then
    exit 1
fi
echo "make test: all passed"
