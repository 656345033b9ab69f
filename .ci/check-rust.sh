#!/usr/bin/env bash
# Fails with what to do when the Rust toolchain is older than the workspace's rust-version.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^rust-version = "\([0-9.]*\)"/\1/p' Cargo.toml)
have=$(rustc --version 2>/dev/null | awk '{print $2}') ||
    { echo "rustc not found: install Rust $want or newer (https://rustup.rs)" >&2; exit 1; }
[[ -n $have ]] || { echo "rustc not found: install Rust $want or newer (https://rustup.rs)" >&2; exit 1; }
if [[ $(printf '%s\n%s\n' "$want" "${have%%-*}" | sort -V | head -1) != "$want" ]]; then
    echo "Rust $have is older than the workspace's rust-version $want (Cargo.toml):" >&2
    echo "  run 'rustup update stable' (or install Rust $want+ from https://rustup.rs)" >&2
    exit 1
fi
