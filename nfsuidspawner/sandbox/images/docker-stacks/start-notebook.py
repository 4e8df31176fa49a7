#!/usr/bin/env python3
"""Sandbox stand-in for docker-stacks' start-notebook.py: a hub-launched server runs
start-singleuser.py, otherwise `jupyter lab`."""

import os
import shlex
import sys

if "JUPYTERHUB_API_TOKEN" in os.environ:
    command = ["start-singleuser.py", *sys.argv[1:]]
else:
    command = ["jupyter", os.environ.get("DOCKER_STACKS_JUPYTER_CMD", "lab")]
    command += [*shlex.split(os.environ.get("NOTEBOOK_ARGS", "")), *sys.argv[1:]]
os.execvp(command[0], command)
