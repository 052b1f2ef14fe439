#!/usr/bin/env bash
# openIMIS side by side: installs openIMIS from PyPI into bench/openimis/.venv (never vendored,
# AGPL-3.0), builds both engines' inputs from scenario.json, runs the correctness gate, times
# both, writes results/latest.json and prints the ratio. Not part of CI. See README.md.
#
# Environment: PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432), AMQP_URL (default
# amqp://guest:guest@127.0.0.1:5672/%2f), RUNS (default 3), OI_SYNCHRONOUS_COMMIT (on|off, default
# on; applied to both sides), PYTHON (default python3.11), SKIP_BUILD=1 to use an existing
# target/release/claimctl, CLAIMCTL=PATH to use that binary (no build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export OI_SYNCHRONOUS_COMMIT="${OI_SYNCHRONOUS_COMMIT:-on}"
RUNS="${RUNS:-3}"
PYTHON="${PYTHON:-python3.11}"
VENV="$HERE/.venv"
WORK="$HERE/results/work"
OI_DB=openimis_bench

# PG_ADMIN_URL -> the OI_DB_* variables settings.py reads.
eval "$("$PYTHON" - <<'EOF'
import os, urllib.parse
u = urllib.parse.urlparse(os.environ["PG_ADMIN_URL"])
for key, value in (("OI_DB_USER", u.username or "postgres"), ("OI_DB_PASSWORD", u.password or ""),
                   ("OI_DB_HOST", u.hostname or "127.0.0.1"), ("OI_DB_PORT", str(u.port or 5432))):
    print(f"export {key}='{value}'")
EOF
)"
export OI_DB_NAME="$OI_DB" DJANGO_SETTINGS_MODULE=settings PYTHONPATH="$HERE"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "1. openIMIS from PyPI into $VENV (pinned in requirements.txt)"
if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r "$HERE/requirements.txt"

step "2. our engine: claimctl (release)"
if [ -z "${CLAIMCTL:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then (cd "$ROOT" && cargo build --release -q -p claimctl); fi
export CLAIMCTL="${CLAIMCTL:-$ROOT/target/release/claimctl}"
echo "using $CLAIMCTL"

step "3. inputs from scenario.json: our pack parameters, registry, claims"
rm -rf "$WORK" && mkdir -p "$WORK"
(cd "$HERE" && "$PYTHON" ours.py "$WORK")
"$CLAIMCTL" rules check "$HERE/pack" >/dev/null
"$CLAIMCTL" rules test "$HERE/pack"

step "4. openIMIS database $OI_DB: schema from the models (migrations off), fixtures"
psql "$PG_ADMIN_URL/postgres" -q -c "DROP DATABASE IF EXISTS $OI_DB WITH (FORCE)" -c "CREATE DATABASE $OI_DB"
# The modules try to read their configuration table before it exists: noise, kept in a log.
(cd "$HERE" && "$VENV/bin/python" -m django migrate --run-syncdb -v 0 > "$WORK/migrate.log" 2>&1) \
  || { cat "$WORK/migrate.log"; exit 1; }
(cd "$HERE" && "$VENV/bin/python" oi_bench.py setup 2>&1 | grep -v '^Load cfg')

step "5. correctness gate: openIMIS one-step processing vs our embedded decisions, line by line"
(cd "$HERE" && "$VENV/bin/python" oi_bench.py gate "$WORK/oi-gate.json" 2>&1 | grep -v '^Load cfg')
"$CLAIMCTL" adjudicate --rules "$HERE/pack" --registry "$WORK/registry.json" "$WORK/claims-all.jsonl" \
  > "$WORK/ours-gate.jsonl" 2>/dev/null
(cd "$HERE" && "$PYTHON" - "$WORK" <<'EOF'
import json, sys
import compare
work = sys.argv[1]
report = compare.gate(f"{work}/oi-gate.json", f"{work}/ours-gate.jsonl")
json.dump(report, open(f"{work}/gate.json", "w"), indent=1)
sys.exit(1 if report["line_differences"] else 0)
EOF
) || { echo "correctness gate failed: no timing"; exit 1; }

step "6. openIMIS timed runs: submit + process per claim, $RUNS runs"
for run in $(seq 1 "$RUNS"); do
  (cd "$HERE" && "$VENV/bin/python" oi_bench.py time "$WORK/oi-time-$run.json" 2>&1 | grep -v '^Load cfg')
  (cd "$HERE" && "$PYTHON" compare.py timed "$WORK/oi-time-$run.json" "$WORK/ours-gate.jsonl")
done

step "7. our timed runs: embedded, queue burst, queue one-in-flight, $RUNS runs each"
if [ "$OI_SYNCHRONOUS_COMMIT" != on ]; then
  echo "note: our worker uses the server's synchronous_commit; set it with ALTER SYSTEM for an 'off' comparison"
fi
(cd "$HERE" && "$VENV/bin/python" ours_bench.py "$WORK" "$WORK/ours.json" "$RUNS")
(cd "$HERE" && "$PYTHON" compare.py same "$WORK/ours-gate.jsonl" "$WORK/ours-worker-all.jsonl")

step "8. report"
(cd "$HERE" && "$PYTHON" report.py "$WORK" "$HERE/results/latest.json")

# The results are in results/; the openIMIS database is only kept when a step above failed
# (to look into it; the next run replaces it).
psql "$PG_ADMIN_URL/postgres" -q -c "DROP DATABASE IF EXISTS $OI_DB WITH (FORCE)"
