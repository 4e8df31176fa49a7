#!/bin/bash
# Sandbox stand-in for the pre-2023-10 docker-stacks start-notebook.sh.
exec start-notebook.py "$@"
