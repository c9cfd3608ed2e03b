#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection offline (no Docker, only PyPI reachable).
#
# Usage: tools/ansible-test-sanity.sh [extra ansible-test sanity args]
#   e.g. tools/ansible-test-sanity.sh --test pep8
#
# Environment:
#   COLLECTION_ROOT  collection to test (default: the repo this script lives in)
#   VENV             virtualenv holding ansible-core/ansible-test (default: $COLLECTION_ROOT/.venv)
#   PYTHON_VERSION   Python version for the sanity tests (default: 3.11)
#
# Why the detours:
# - ansible-test only works from a path ending in ansible_collections/<namespace>/<name>,
#   so the collection's files are copied into such a temp tree. Only the files git would
#   track are copied (tracked + untracked-but-not-ignored), so .venv, tests/output etc.
#   never reach ansible-test. The temp tree is not a git repo: ansible-test then lists
#   files by walking the directory (its "unversioned" source provider), which is exactly
#   the copied set.
# - Every sanity test gets its own virtualenv, created without pip; ansible-test bootstraps
#   pip by downloading get-pip from a host we cannot reach, unless the script is already in
#   ~/.ansible/test/cache/get_pip_<pip version>.py. We put tools/get_pip_standin.py there.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${COLLECTION_ROOT:-$SCRIPT_DIR/..}" && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
ANSIBLE_TEST="$VENV/bin/ansible-test"
STANDIN="$SCRIPT_DIR/get_pip_standin.py"

if [[ ! -x "$ANSIBLE_TEST" ]]; then
    echo "error: $ANSIBLE_TEST not found; create the venv first (or set VENV=...)" >&2
    exit 2
fi

# Namespace and name come from galaxy.yml (default cms.patching).
NAMESPACE="$(sed -n 's/^namespace:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "$ROOT/galaxy.yml" 2>/dev/null | head -n1)"
NAME="$(sed -n 's/^name:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "$ROOT/galaxy.yml" 2>/dev/null | head -n1)"
NAMESPACE="${NAMESPACE:-cms}"
NAME="${NAME:-patching}"

# The get-pip cache file name ansible-test reads is derived from the pip version it pins
# (ansible_test/_internal/python_requirements.py: get_venv_packages; 24.2 for ansible-core 2.19).
PIP_PIN="$("$VENV/bin/python" - <<'EOF'
import os
import re
import ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
with open(path, encoding='utf-8') as source:
    match = re.search(r"pip='([0-9.]+)'", source.read())
print(match.group(1) if match else '24.2')
EOF
)"
CACHE_DIR="$HOME/.ansible/test/cache"
mkdir -p "$CACHE_DIR"
cp "$STANDIN" "$CACHE_DIR/get_pip_${PIP_PIN//./_}.py"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ansible-test-sanity.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

DEST="$TMP/ansible_collections/$NAMESPACE/$NAME"
mkdir -p "$DEST"

# Copy the files git would track (tracked + untracked-but-not-ignored), skipping deleted ones
# and, as a safety net should .gitignore lack them, .venv/ and tests/output/.
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do
            case "$f" in .venv/* | tests/output/*) continue ;; esac
            if [[ -e "$f" || -L "$f" ]]; then printf '%s\0' "$f"; fi
        done \
        | xargs -0 -r cp -P --parents -t "$DEST")
else
    echo "error: $ROOT is not a git work tree" >&2
    exit 2
fi

# The modules import amazon.aws's module_utils and doc fragments: the import, validate-modules and ansible-doc tests
# look for dependencies beside the collection under test, so the venv's copy (shipped by the `ansible` package) goes
# there too.
AMAZON_AWS="$(cd / && "$VENV/bin/python" -c 'import ansible_collections.amazon.aws as m; print(list(m.__path__)[0])')"
mkdir -p "$TMP/ansible_collections/amazon"
cp -r "$AMAZON_AWS" "$TMP/ansible_collections/amazon/aws"

# If $TMP happens to sit inside some git work tree, ansible-test would use that repo to
# list files (and find none of ours); an own empty repo at the collection root avoids that
# (git ls-files --others then lists the copied files).
if git -C "$TMP" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$DEST" init -q
fi

COLOR=(--color no)
if [[ -t 1 ]]; then
    COLOR=(--color yes)
fi

# --venv, not --local: both work offline without Docker (each sanity test builds its own venv
# either way and needs the get-pip stand-in), but --venv re-runs ansible-test in a fresh venv
# (tests/output/.tmp/delegation) made from the base interpreter of $VENV, without its
# site-packages, so extra tools installed in $VENV (ansible-lint, pytest, ...) cannot leak in.
# Costs ~5 s per run (one pip bootstrap).
cd "$DEST"
status=0
"$ANSIBLE_TEST" sanity --venv --python "$PYTHON_VERSION" "${COLOR[@]}" "$@" || status=$?
exit "$status"
