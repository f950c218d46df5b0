#!/bin/sh
# A scratch copy of the operator (and recops_drift) with a proposed patch applied, for measuring a change without
# editing the working tree: bench_scale.py --pythonpath tuned:$DEST
# Usage: make_scratch.sh [DEST] [PATCH]   (default PATCH: bench/scale/proposed-events.patch, not applied in the tree)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/recops-scratch}
PATCH=$(realpath "${2:-$ROOT/bench/scale/proposed-events.patch}")
rm -rf "$DEST" && mkdir -p "$DEST/tree/operator" "$DEST/tree/drift"
cp -r "$ROOT/operator/recops" "$DEST/tree/operator/" && cp -r "$ROOT/drift/recops_drift" "$DEST/tree/drift/"
(cd "$DEST/tree" && patch -s -p1 < "$PATCH")
ln -s "$DEST/tree/operator/recops" "$DEST/recops" && ln -s "$DEST/tree/drift/recops_drift" "$DEST/recops_drift"
find "$DEST/tree" -name __pycache__ -prune -exec rm -rf {} +
echo "$DEST"
