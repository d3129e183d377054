#!/usr/bin/env bash
# Installs the dashboard's npm packages from their committed package-lock.json files, idempotently:
#   src/AnomalyVae.Api/Dashboard  (chart.js: the Api build copies its UMD bundle into <output>/dashboard/vendor)
#   tests/dashboard                   (playwright-core: drives Debian's chromium in the end-to-end test)
# `npm ci --ignore-scripts` (exact versions from the lock file, no package scripts). A directory whose
# node_modules already matches its lock file is skipped, so a second run takes well under a second.
set -euo pipefail
AV_TAG=dashboard
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

command -v npm >/dev/null 2>&1 || av_die "npm is missing (deploy/local/setup.sh installs it)"

for dir in src/AnomalyVae.Api/Dashboard tests/dashboard; do
  path="$ROOT/$dir"
  [ -f "$path/package-lock.json" ] || av_die "$dir/package-lock.json is missing"
  # Current when every package of the lock file is installed at its locked version.
  if (cd "$path" && node -e '
      const fs = require("fs");
      const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
      for (const [where, pkg] of Object.entries(lock.packages || {})) {
        if (!where) continue;
        let installed;
        try { installed = JSON.parse(fs.readFileSync(where + "/package.json", "utf8")).version; } catch { process.exit(1); }
        if (installed !== pkg.version) process.exit(1);
      }') 2>/dev/null; then
    av_say "$dir: npm packages present"
    continue
  fi
  av_say "$dir: npm ci"
  (cd "$path" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || av_die "npm ci failed in $dir (is the npm registry reachable?)"
done
