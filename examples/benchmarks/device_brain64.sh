#!/usr/bin/env bash
# The brain harness at the paper's size (64^3) with the ISTN on a GPU: one short run for
# the device tool (a lent GPU machine, no internet), one seed per call.
#
# Prepare once, on the development machine, in the repository root (the GPU image has
# torch, scikit-learn, pandas, scipy, scikit-image, pluggy and click, not these):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       skorch nibabel nilearn
# then call the device tool's run with
#   command: bash examples/benchmarks/device_brain64.sh 0     (the seed; 1, 2 in later calls)
#   carry:   [".whl"]      timeout_s: 600
# The tables, the travelling-subject figures and the log come back as one archive in $OUT.
# Locally (a CPU check of the script): DEVICE=cpu bash examples/benchmarks/device_brain64.sh 0 --quick --shape 16
set -euo pipefail
seed=${1:-0}
shift || true
out=${OUT:-device-output}
site=$(mktemp -d)
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" .
export PYTHONPATH=$site PYTHONUNBUFFERED=1
device=${DEVICE:-$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
mkdir -p "$out/seed$seed"
python3 -c "import torch; print('torch', torch.__version__, 'device', '$device',
            torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
python3 examples/benchmarks/brain_baselines.py --istn --shape 64 --seed "$seed" \
    --threads "$(nproc)" --jobs "$(nproc)" --out "$out/seed$seed" \
    --istn-options "{\"device\": \"$device\", \"dis_augmentation\": \"lowpass\"}" "$@" \
    2>&1 | tee "$out/seed$seed/log.txt"
tar -czf "$out/brain64-seed$seed.tar.gz" -C "$out" "seed$seed"
rm -rf "$out/seed$seed" "$site"
