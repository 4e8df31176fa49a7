#!/bin/bash
# Sandbox stand-in for the pre-2023-10 docker-stacks start-singleuser.sh.
exec start-singleuser.py "$@"
