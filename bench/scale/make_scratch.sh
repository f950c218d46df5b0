#!/bin/sh
# A scratch copy of the operator (and recops_drift) with bench/scale/proposed.patch applied, for measuring the
# proposed changes without editing the working tree: bench_scale.py --pythonpath tuned:$DEST
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/recops-scratch}
rm -rf "$DEST" && mkdir -p "$DEST/tree/operator" "$DEST/tree/drift"
cp -r "$ROOT/operator/recops" "$DEST/tree/operator/" && cp -r "$ROOT/drift/recops_drift" "$DEST/tree/drift/"
(cd "$DEST/tree" && patch -s -p1 < "$ROOT/bench/scale/proposed.patch")
ln -s "$DEST/tree/operator/recops" "$DEST/recops" && ln -s "$DEST/tree/drift/recops_drift" "$DEST/recops_drift"
find "$DEST/tree" -name __pycache__ -prune -exec rm -rf {} +
echo "$DEST"
