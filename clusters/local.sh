#!/usr/bin/env bash
# A multi-node Ray cluster on this machine: a head on 127.0.0.1 (0 CPUs, dashboard and job API
# on 127.0.0.1:8265) and worker nodes node_a, node_b, ... (1 CPU each, a custom resource named
# after each), every node its own `ray start --block` process group with its own temp dir and
# its own auth token. `down` ends only those nodes (never `ray stop`, which ends every Ray
# process on the machine).
#
#   clusters/local.sh up [--workers 2] [--worker_cpus 1] [--head_cpus 0] [--port 6379] [--dashboard_port 8265]
#   export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$PWD/.raysum-cluster/auth_token
#   ray job submit --working-dir . -- raysum train --mode full --output_dir /abs/shared/outputs
#   clusters/local.sh down
#
# Same as `raysum cluster up|down`; the record, token and node logs live in .raysum-cluster/
# (--state DIR to choose another).
set -euo pipefail
cd "$(dirname "$0")/.."
RAYSUM=${RAYSUM:-raysum}
[ -x .venv/bin/raysum ] && RAYSUM=.venv/bin/raysum
exec "$RAYSUM" cluster "$@"
