#!/usr/bin/env bash
# check-importable: a program outside this repository that imports every
# public package of gyre builds and vets with a plain `go build` (no linker
# flag, empty GOFLAGS), and the module, ingestd and ingest-load
# cross-compile for darwin and freebsd (where they run on the net engine).
# `make test` runs it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GOFLAGS=
mod=$(cd "$repo" && go list -m)
gover=$(cd "$repo" && go list -m -f '{{.GoVersion}}')
pkgs=$(cd "$repo" && go list -f '{{if and (ne .Name "main") (not (eq (len .GoFiles) 0))}}{{.ImportPath}}{{end}}' ./... | grep -v '/internal/' | grep -v '^$')

cat > "$tmp/go.mod" <<MOD
module example.com/importer

go $gover

require $mod v0.0.0

replace $mod => $repo
MOD
{
  echo "// Command importer uses every public package of gyre."
  echo "package main"
  echo
  echo "import ("
  for p in $pkgs; do echo "	_ \"$p\""; done
  echo ")"
  echo
  echo "func main() {}"
} > "$tmp/main.go"
cp "$repo/go.sum" "$tmp/go.sum"
(cd "$tmp" && go mod tidy >/dev/null 2>&1 || true)
echo "check-importable: a fresh module imports $(echo "$pkgs" | wc -w) packages:" $pkgs
(cd "$tmp" && go build -o /dev/null . && go vet .)
echo "check-importable: built and vetted with GOFLAGS='' (no linker flag)"
for os in darwin freebsd; do
  (cd "$repo" && GOOS=$os GOARCH=amd64 go build ./...)
  (cd "$tmp" && GOOS=$os GOARCH=amd64 go build -o /dev/null .)
  echo "check-importable: GOOS=$os builds (module, ingestd, ingest-load, importer)"
done
