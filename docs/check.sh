#!/usr/bin/env bash
# Build the book (docs/ -> docs/book/) and check every link: the book's
# internal links and #anchors, links to repository files, the README's links
# into docs/, and that every page of docs/src is in SUMMARY.md. Fails on any
# broken link, missing page or mdBook warning.
#
# Uses `mdbook` from PATH when there is one; else installs the pinned version
# with cargo into a cache directory (about 2 CPU minutes: 70 s to 150 s on two
# cores), reused by later runs: $STEPUP_MDBOOK_CACHE, default
# ~/.cache/stepup/mdbook-<version>.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4

if command -v mdbook >/dev/null 2>&1; then
  mdbook=mdbook
else
  cache="${STEPUP_MDBOOK_CACHE:-${HOME:-/root}/.cache/stepup/mdbook-$MDBOOK_VERSION}"
  mdbook="$cache/bin/mdbook"
  if ! "$mdbook" --version >/dev/null 2>&1; then
    echo "installing mdbook $MDBOOK_VERSION into $cache"
    # A target directory of its own: CARGO_TARGET_DIR may be the project's.
    CARGO_TARGET_DIR="$cache/target" cargo install mdbook --locked --version "$MDBOOK_VERSION" \
      --no-default-features --features search --root "$cache"
    rm -rf "$cache/target"
  fi
fi
echo "$("$mdbook" --version) ($mdbook)"

rm -rf docs/book
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$mdbook" build docs 2>&1 | tee "$log"; then
  echo "docs: mdbook build failed" >&2
  exit 1
fi
# mdBook reports some problems (a link to a missing chapter, bad front matter)
# as warnings and still builds: treat them as errors.
if grep -E '(^| )(WARN|ERROR)' "$log" >/dev/null; then
  echo "docs: mdbook build printed warnings (above)" >&2
  exit 1
fi

python3 docs/linkcheck.py .
