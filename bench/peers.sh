#!/usr/bin/env bash
# The whole-system comparison in one command: the shared peer kit (../shared/bench, or
# $PEER_KIT) runs its origin and its peers, then edge-personalizer with the kit's rules
# (bench/peer-rules, 2 workers) and, as the floor, the same server without rules. The
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
cd "$kit"
./peers.sh \
    --target project=http://127.0.0.1:18100 \
    --start "project=$serve --rules bench/peer-rules --port 18100" \
    --target project-pass=http://127.0.0.1:18101 --target-kind project-pass=pass \
    --start "project-pass=$serve --port 18101" \
    --out "$out" "$@"
"$here/.venv/bin/python" "$here/bench/peers_table.py" "$out" | tee "${out%.json}.md"
echo "results: $out (table: ${out%.json}.md)"
