#!/usr/bin/env bash
# Copy the official files the GPU suite's anchors import into benchmarks/.anchors/<repo>/ (gitignored).
# Source per repo: a local bare mirror (ANCHOR_MIRRORS, default /work/.mirror) if present, else a
# shallow git clone from GitHub. The copied files are never edited (shims live in benchmarks/anchors.py).
#
# usage: benchmarks/fetch_anchors.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mirrors=${ANCHOR_MIRRORS:-/work/.mirror}

fetch() { # fetch OWNER/NAME DEST FILE...
  local repo=$1 dest=$here/.anchors/$2 gitdir tmp
  shift 2
  gitdir=$mirrors/${repo/\//+}/repo
  [[ -d $gitdir ]] || gitdir=$mirrors/${repo/\//+}
  if ! git --git-dir="$gitdir" rev-parse -q --verify HEAD >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    git clone -q --depth 1 "https://github.com/$repo.git" "$tmp/clone"
    gitdir=$tmp/clone/.git
  fi
  for f in "$@"; do
    mkdir -p "$dest/$(dirname "$f")"
    git --git-dir="$gitdir" show "HEAD:$f" >"$dest/$f"
  done
  git --git-dir="$gitdir" rev-parse HEAD >"$dest/COMMIT"
  echo "$repo @ $(cat "$dest/COMMIT") -> $dest ($# files)"
}

fetch rayleizhu/BiFormer BiFormer models/biformer.py models/_common.py ops/bra_legacy.py
fetch giorgioroffo/infinite-self-attention infinite-self-attention \
  infsa/__init__.py infsa/core.py infsa/attention.py infsa/convert.py examples/custom_transformer.py
