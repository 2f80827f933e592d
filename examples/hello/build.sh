#!/bin/sh
# Builds the sample package: dist/hello-1.0.tar.gz holding bin/hello.
set -eu
rm -rf out dist
mkdir -p out/hello-1.0/bin dist
cp src/hello.sh out/hello-1.0/bin/hello
chmod 755 out/hello-1.0/bin/hello
# Fixed timestamps and owners, so the same commit gives the same bytes.
find out -exec touch -d '2024-01-01 00:00:00' {} +
tar -C out -c hello-1.0 | gzip -n -9 > dist/hello-1.0.tar.gz
echo "built dist/hello-1.0.tar.gz ($(wc -c < dist/hello-1.0.tar.gz) bytes)"
