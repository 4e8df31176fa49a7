#!/usr/bin/env python3
"""Sandbox stand-in for docker-stacks' start-singleuser.py: run jupyterhub-singleuser."""

import os
import shlex
import sys

command = [
    "jupyterhub-singleuser",
    *shlex.split(os.environ.get("NOTEBOOK_ARGS", "")),
    *sys.argv[1:],
]
os.execvp(command[0], command)
