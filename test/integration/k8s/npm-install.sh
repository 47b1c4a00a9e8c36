#!/usr/bin/env bash
# Installs the npm packages the Kubernetes manifest tests use (schemas of
# kubernetes-models, the yaml parser) into build/npm (git-ignored), once.
# Needs npm and the npm registry. Prints the node_modules path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
dir="${TURNPIKE_NPM_DIR:-$root/build/npm}"
want="kubernetes-models@4.5.1 yaml@2.9.1"
stamp="$dir/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    command -v npm >/dev/null || { echo "npm not found: install nodejs and npm (make deps)" >&2; exit 1; }
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error $want >&2
    echo "$want" > "$stamp"
fi
echo "$dir/node_modules"
