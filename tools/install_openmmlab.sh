#!/usr/bin/env bash
# Install the OpenMMLab stack (mmcv 2.1.0 with ops, mmengine, mmdet, mmseg, mmpretrain) into a venv.
#
# PyPI only has mmcv 2.1.0 as source, and it does not build against torch 2.14 as shipped: its
# setup.py imports pkg_resources (gone from setuptools >= 81) and asks for C++14/17 while torch's
# headers need C++20. This script applies the recipe of docs/DESIGN.md once, keeps the built wheel in a
# cache keyed by the torch version, and reuses it on later runs (the build takes ~14 min on 2 cores).
#
# usage: tools/install_openmmlab.sh PYTHON [WHEEL_CACHE]
set -euo pipefail

PY=${1:?usage: install_openmmlab.sh PYTHON [WHEEL_CACHE]}
# Absolute, but not symlink-resolved: a venv's python must stay the venv's when we cd below.
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
CACHE=${2:-${XDG_CACHE_HOME:-$HOME/.cache}/attnzoo/wheels}
MMCV_VERSION=2.1.0

if "$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmengine" 2>/dev/null; then
    exit 0
fi

TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
WHEELS="$CACHE/torch-$TORCH_VERSION"
mkdir -p "$WHEELS"
"$PY" -m pip install -q "setuptools==80.9.0" wheel ninja

if ! ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (once; ~14 min on 2 cores)" >&2
    SRC=$(mktemp -d)
    trap 'rm -rf "$SRC"' EXIT
    # --no-build-isolation: the metadata step runs setup.py, which needs the pinned setuptools above.
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$SRC"
    tar -xzf "$SRC"/mmcv-"$MMCV_VERSION".tar.gz -C "$SRC"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
    (cd "$SRC/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
        "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$WHEELS" .)
fi

"$PY" -m pip install -q "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl
"$PY" -m pip install -q mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex
"$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain; print('OpenMMLab stack:', 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__)"
