#!/bin/sh
# The sample project's program: greets whoever it is told to.
echo "Hello, ${1:-world}! Built by Crowdbake."
