#!/usr/bin/env bash
# The whole-system comparison in one command: the shared peer kit (../shared/bench, or
# $PEER_KIT) runs its origin and its peers, then edge-personalizer with the kit's rules
# (bench/peer-rules, 2 workers), the same rules with the learning loop counting into
# SQLite and into Redis (bench/learning-rules: a goal, so every exposure is counted, and a
# bandit experiment per device type for the visitors no rule claims), the
# demo rules (rules/: none of their slots is in the kit's pages, so the kit checks that the
# pages pass unchanged), and, as the floor, the same server without rules. The
# JSON lands in bench/results/peers-<date>.json, with each measure as a ratio to the peers
# in peers-<date>.md (bench/peers_table.py). Extra arguments go to the kit
# (for example --duration 5 --pages small).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kit="${PEER_KIT:-$here/../shared/bench}"
if [ ! -x "$kit/peers.sh" ]; then
    echo "the peer kit is not at $kit (set PEER_KIT)" >&2
    exit 2
fi
serve="cd '$here' && exec .venv/bin/edge-personalizer serve --origin \"\$EP_ORIGIN\" --workers 2 --no-access-log"
out="$here/bench/results/peers-$(date +%Y%m%d-%H%M%S).json"
data="$(mktemp -d)"
redis_port=18190
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >"$data/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; rm -rf "$data"' EXIT
cd "$kit"
./peers.sh \
    --target project=http://127.0.0.1:18100 \
    --start "project=$serve --rules bench/peer-rules --port 18100" \
    --target project-learn=http://127.0.0.1:18102 \
    --start "project-learn=export EP_DATA_DIR=$data/sqlite; $serve --rules bench/learning-rules --port 18102" \
    --target project-learn-redis=http://127.0.0.1:18103 \
    --start "project-learn-redis=export EP_STORE_URL=redis://127.0.0.1:$redis_port/0; $serve --rules bench/learning-rules --port 18103" \
    --target project-demo=http://127.0.0.1:18104 --target-kind project-demo=pass \
    --start "project-demo=export EP_DATA_DIR=$data/demo; $serve --rules rules --port 18104" \
    --target project-pass=http://127.0.0.1:18101 --target-kind project-pass=pass \
    --start "project-pass=$serve --port 18101" \
    --out "$out" "$@"
"$here/.venv/bin/python" "$here/bench/peers_table.py" "$out" | tee "${out%.json}.md"
echo "results: $out (table: ${out%.json}.md)"
