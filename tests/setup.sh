#!/usr/bin/env bash
# Test-time system set-up: nothing yet beyond the Python environment the Makefile installs.
exit 0
