#!/bin/sh
# Installs the package into a scratch prefix and checks that it runs.
set -eu
rm -rf /tmp/hello-test && mkdir -p /tmp/hello-test
gzip -dc dist/hello-1.0.tar.gz | tar -C /tmp/hello-test -x
out=$(/tmp/hello-test/hello-1.0/bin/hello volunteer)
echo "$out"
[ "$out" = "Hello, volunteer! Built by Crowdbake." ] || { echo "unexpected output" >&2; exit 1; }
echo "test passed"
