#!/usr/bin/env bash
# Proves that `pip install .` (no train extra) serves: a throwaway venv with the plain
# install runs `novacron replay` on a small file with the shipped models, imports the
# worker, and has no TensorFlow. Run by tests/install/ under `make test`.
#
# The venv is kept under the stack's state dir and its dependencies are reinstalled only
# when pyproject.toml changes; the project itself is reinstalled (not editable) each run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${NOVACRON_STATE_DIR:-$root/.novacron}
case $state in /*) ;; *) state=$root/$state ;; esac
venv=$state/serve-venv
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/pyproject.toml" "$venv/.pyproject.toml"; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "$root"
    cp "$root/pyproject.toml" "$venv/.pyproject.toml"
else
    "$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$root"
fi

rm -rf "$root/build"  # setuptools' in-tree build folder of the non-editable install

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # away from the checkout: only the installed package can be imported

if "$venv/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "serve install pulled in TensorFlow; it belongs to the train extra only" >&2
    exit 1
fi
"$venv/bin/python" -c "import agents.app, agents.worker, streams.pipeline; print('worker imports ok')"

{
    echo "timestamp,link_id,mode,throughput_mbps,latency_ms"
    for i in $(seq 0 199); do
        echo "$((1760000000 + i)),dc-1,datacenter,$((900 + i % 17)).5,2.0"
        echo "$((1760000000 + i)),wan-1,internet,$((300 + i % 23)).25,80.0"
    done
} > links.csv
NOVACRON_STATE_DIR="$work/state" NOVACRON_REGISTRY_URL="sqlite:///$work/state/registry.sqlite" \
NOVACRON_ARTIFACT_DIR="$work/state/artifacts" \
    "$venv/bin/novacron" replay -i links.csv -o out.jsonl | tee replay.txt
"$venv/bin/python" - <<'PY'
import json

lines = [json.loads(line) for line in open("out.jsonl")]
models = {
    (l["value"]["mode"], l["value"]["model"]["name"])
    for l in lines
    if l["topic"] == "predictions.bandwidth.v1"
}
expected = {("datacenter", "bandwidth-lstm-datacenter"), ("internet", "bandwidth-lstm-internet")}
assert models == expected, f"served {sorted(models)}, expected the shipped LSTMs {sorted(expected)}"
print(f"serve install ok: {len(lines)} records, models {sorted(m for _, m in models)}")
PY
