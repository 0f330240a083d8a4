#!/bin/sh
# Regenerates model/prosody/testdata/upstream/*.json: the metric families
# that pinned revisions of Prosody and prosody-modules define, as
# model/prosody/luascan reads their Lua sources. The catalog's coverage test
# (model/prosody/coverage_test.go) holds model/prosody/catalog.toml to these
# files, and to the Prosody installed on the machine (/usr/lib/prosody),
# which it scans itself.
#
# Both projects keep their sources in Mercurial. Give checkouts of the pinned
# revisions below in PROSODY_TRUNK, PROSODY_13 and PROSODY_MODULES, or leave
# them unset and this script clones them with hg (apt-get install mercurial).
# To move to newer revisions, change the pins, run this script, and add to
# the catalog what the coverage test then reports missing.
set -eu

# Prosody trunk: the last revision of 2025-05-13, "mod_http_files: Fail if
# missing the required 'http_files_dir' setting" (git mirror commit
# f14f1b331f0f123589386fef4a5620e284dcb5b3).
TRUNK_PIN='2025-05-13 22:38:34 +0200'
TRUNK_LABEL="trunk as of $TRUNK_PIN (mod_http_files: Fail if missing the required 'http_files_dir' setting; git mirror commit f14f1b331f0f)"
# Prosody 13.0: the 13.0 branch as of 2025-05-05, "MUC: Fix nickname
# registration form error handling (fixes #1930)" (git mirror commit
# b439ad72f1323a43c22f5fb89e48611fd9c68adb).
BRANCH13_PIN='2025-05-05 16:32:45 +0200'
BRANCH13_LABEL="13.0 branch as of $BRANCH13_PIN (MUC: Fix nickname registration form error handling; git mirror commit b439ad72f132)"
# prosody-modules trunk.
MODULES_REV=e407d9795b6af590c7e6904c16de71de667cfa19

cd "$(dirname "$0")/.."
out=model/prosody/testdata/upstream
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

checkout() { # dir repository revset
	if [ ! -d "$1" ]; then
		hg clone --quiet --noupdate "$2" "$1"
		hg --repository "$1" update --quiet --rev "$3"
	fi
}

trunk=${PROSODY_TRUNK:-$work/trunk}
branch13=${PROSODY_13:-$work/13.0}
modules=${PROSODY_MODULES:-$work/prosody-modules}
checkout "$trunk" https://hg.prosody.im/trunk/ "last(date('<=$TRUNK_PIN'))"
checkout "$branch13" https://hg.prosody.im/13.0/ "last(date('<=$BRANCH13_PIN'))"
checkout "$modules" https://hg.prosody.im/prosody-modules/ "$MODULES_REV"

go run ./model/prosody/tools/metriccalls -root "$trunk" -source prosody -revision "$TRUNK_LABEL" >"$out/prosody-trunk.json"
go run ./model/prosody/tools/metriccalls -root "$branch13" -source prosody -revision "$BRANCH13_LABEL" >"$out/prosody-13.0.json"
go run ./model/prosody/tools/metriccalls -root "$modules" -source prosody-modules -revision "$MODULES_REV" >"$out/prosody-modules.json"
echo "wrote $out/prosody-trunk.json $out/prosody-13.0.json $out/prosody-modules.json"
