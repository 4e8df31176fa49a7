"""The identity initContainer's shell script, generated from the hub's own refusals.

The script runs in the lab's own image (or `init_image`), so it is POSIX sh and uses
only `stat -c`, `ln`, `mkdir`, `mv`, `cat` and `printf`. It reads its inputs from the
environment (see :func:`nfsuidspawner.manifests.identity_init_container`):

NFSUID_USER        the hub username, for messages
NFSUID_SHARE       where the share root is mounted, read-only, in this container
NFSUID_HOME_DIR    the user's directory relative to the share root (home/alice)
NFSUID_MOUNT_PATH  where the lab sees the share root, for messages (/data/hpc)
NFSUID_PATH        the directory as the lab sees it, the home link's target
NFSUID_MIN_UID, NFSUID_MIN_GID
NFSUID_EXPECT_UID  set when the uid is already known (hub or callable source):
                   the directory must be owned by it
NFSUID_RUN         where it writes what the lab container mounts read-only
NFSUID_HOOKS       set when start.sh makes the account (no known identity): write the
                   start hooks that export NB_* and give the groups
NFSUID_ETC         set when the identity is known: write the image's passwd and group
                   with the user's account and groups in them
NFSUID_NB_USER, NFSUID_NB_GROUP, NFSUID_HOME   the account's names and home
NFSUID_GROUPS      the supplementary groups the hub granted, "gid:name gid:name"
NFSUID_HOME_LINK   set to the path of the /home/<user> symlink to create
NFSUID_HOME_MOUNTPOINT   or to the empty directory the user's directory is mounted on
NFSUID_TERMINATION_LOG   where Kubernetes reads the failure reason

The script walks the path one component at a time and refuses a link anywhere on it,
before any container mounts the user's directory: a kubelet follows links in a subPath,
and creates a missing one on the share.

On a refusal it writes one line, the same one the hub would raise, to the
termination log and to stderr, and exits 1. On success its termination message
is "nfsuid: user U runs as UID:GID", which the hub records in its state.
"""

from __future__ import annotations

import functools
import re

from .identity import REFUSALS

HOOK_NAME = "nfsuid-identity.sh"
# start.sh's useradd puts NB_USER in group 100 ("users") as well, and sudo sets the lab's
# groups from /etc/group. This before-notebook.d hook, run as root before the switch,
# creates the granted groups (replacing an image group of the same name, whatever its
# gid) and makes them, and only them, NB_USER's.
GROUPS_HOOK_NAME = "nfsuid-groups.sh"
# The image's run-hooks.sh logs a failed hook and goes on, so the hook ends start.sh itself
# (an `exit` in a sourced hook) unless NB_USER has exactly the wanted gids: a lab never
# starts with groups it was not granted, or without those it was.
GROUPS_CHECK = (
    'have=" $(id -G "$NB_USER") "; for g in WANT; do case "$have" in *" $g "*) ;; *) exit 1;; esac;'
    ' have=${have% $g *}" "${have#* $g }; done; [ -z "${have# }" ] || exit 1'
)
PASSWD, GROUP = "passwd", "group"
JUPYTER_CONFIG_DIR = "jupyter"
# The lab's working dir is / (see manifests); terminals open in the server's working dir.
JUPYTER_CONFIG = ("import os", 'os.chdir(os.path.expanduser("~"))')

_SHELL_FIELDS = {
    "uid": "$uid",
    "gid": "$gid",
    "min_uid": "$NFSUID_MIN_UID",
    "min_gid": "$NFSUID_MIN_GID",
    "expected_uid": "$NFSUID_EXPECT_UID",
}


def _sh_double_quoted(text: str) -> str:
    """Quote `text` for sh double quotes, then let {field}s become shell variables."""
    escaped = re.sub(r'(["\\$`])', r"\\\1", text)
    return '"' + escaped.format(**_SHELL_FIELDS) + '"'


def _refuse(reason: str) -> str:
    problem, fix = REFUSALS[reason]
    return f"refuse {_sh_double_quoted(problem)} {_sh_double_quoted(fix)}"


@functools.cache
def identity_script() -> str:
    return f"""\
set -u
log=${{NFSUID_TERMINATION_LOG:-/dev/termination-log}}
refuse() {{
  printf 'nfsuid: user %s: %s %s. Fix: %s\\n' "$NFSUID_USER" "$shown" "$1" "$2" > "$log"
  cat "$log" >&2
  exit 1
}}
dir=$NFSUID_SHARE
shown=${{NFSUID_MOUNT_PATH%/}}
set -f
IFS=/
for part in $NFSUID_HOME_DIR; do
  if [ ! -x "$dir" ]; then {_refuse("unsearchable")}; fi
  dir=$dir/$part
  shown=$shown/$part
  if [ -L "$dir" ]; then {_refuse("symlink")}; fi
  if [ ! -e "$dir" ]; then {_refuse("missing")}; fi
  if [ ! -d "$dir" ]; then {_refuse("not_directory")}; fi
done
unset IFS
set +f
owner=$(stat -c '%u %g' "$dir") || exit 1
uid=${{owner% *}}
gid=${{owner#* }}
if [ "$uid" -eq 0 ]; then {_refuse("root")}; fi
if [ "$uid" -eq 65534 ]; then {_refuse("nobody")}; fi
if [ "$uid" -lt "$NFSUID_MIN_UID" ]; then {_refuse("low_uid")}; fi
if [ "$gid" -eq 0 ]; then {_refuse("root_group")}; fi
if [ "$gid" -eq 65534 ]; then {_refuse("nobody_group")}; fi
if [ "$gid" -lt "$NFSUID_MIN_GID" ]; then {_refuse("low_gid")}; fi
if [ -n "${{NFSUID_EXPECT_UID:-}}" ] && [ "$uid" -ne "$NFSUID_EXPECT_UID" ]; then
  {_refuse("wrong_owner")}
fi
groups=""
names=""
for g in ${{NFSUID_GROUPS:-}}; do
  if [ "${{g%%:*}}" -eq "$gid" ]; then continue; fi
  groups="$groups $g"
  names="${{names:+$names,}}${{g#*:}}"
done
run=$NFSUID_RUN
if [ -n "${{NFSUID_HOOKS:-}}" ]; then
  printf 'export NB_USER=%s NB_UID=%s NB_GID=%s NB_GROUP=%s\\n' \\
    "$NFSUID_NB_USER" "$uid" "$gid" "$NFSUID_NB_GROUP" > "$run/{HOOK_NAME}.tmp"
  mv "$run/{HOOK_NAME}.tmp" "$run/{HOOK_NAME}"
  want=$gid
  for g in $groups; do want="$want ${{g%%:*}}"; done
  for g in $groups; do
    printf 'groupdel %s 2>/dev/null; groupadd --non-unique --gid %s %s || exit 1\\n' \\
      "${{g#*:}}" "${{g%%:*}}" "${{g#*:}}"
  done > "$run/{GROUPS_HOOK_NAME}"
  printf 'usermod -G "%s" "$NB_USER" || exit 1\\n' "$names" >> "$run/{GROUPS_HOOK_NAME}"
  printf '%s\\n' '{GROUPS_CHECK}' | sed "s/WANT/$want/" >> "$run/{GROUPS_HOOK_NAME}"
fi
if [ -n "${{NFSUID_ETC:-}}" ]; then
  while IFS= read -r line; do
    rest=${{line#*:}}; rest=${{rest#*:}}
    if [ "${{line%%:*}}" != "$NFSUID_NB_USER" ] && [ "${{rest%%:*}}" != "$uid" ]; then
      printf '%s\\n' "$line"
    fi
  done < /etc/passwd > "$run/{PASSWD}"
  printf '%s:x:%s:%s::%s:/bin/bash\\n' "$NFSUID_NB_USER" "$uid" "$gid" "$NFSUID_HOME" \\
    >> "$run/{PASSWD}"
  while IFS= read -r line; do
    name=${{line%%:*}}; rest=${{line#*:}}; rest=${{rest#*:}}; g=${{rest%%:*}}
    keep=yes
    for taken in "$gid:$NFSUID_NB_GROUP" $groups; do
      if [ "$name" = "${{taken#*:}}" ] || [ "$g" = "${{taken%%:*}}" ]; then keep=; fi
    done
    if [ -n "$keep" ]; then printf '%s\\n' "$line"; fi
  done < /etc/group > "$run/{GROUP}"
  printf '%s:x:%s:\\n' "$NFSUID_NB_GROUP" "$gid" >> "$run/{GROUP}"
  for g in $groups; do
    printf '%s:x:%s:%s\\n' "${{g#*:}}" "${{g%%:*}}" "$NFSUID_NB_USER" >> "$run/{GROUP}"
  done
fi
mkdir -p "$run/{JUPYTER_CONFIG_DIR}"
printf '%s\\n' {" ".join(f"'{line}'" for line in JUPYTER_CONFIG)} \\
  > "$run/{JUPYTER_CONFIG_DIR}/jupyter_server_config.py"
if [ -n "${{NFSUID_HOME_LINK:-}}" ]; then
  ln -sfn "$NFSUID_PATH" "$NFSUID_HOME_LINK"
fi
if [ -n "${{NFSUID_HOME_MOUNTPOINT:-}}" ]; then
  mkdir -p "$NFSUID_HOME_MOUNTPOINT"
fi
printf 'nfsuid: user %s runs as %s:%s\\n' "$NFSUID_USER" "$uid" "$gid" > "$log"
cat "$log"
"""


_RESOLVED = re.compile(r"nfsuid: user .* runs as (\d+):(\d+)")


def parse_resolved(message: str | None) -> tuple[int, int] | None:
    """The uid and gid from the script's success message, if that is what `message` is."""
    match = _RESOLVED.search(message or "")
    return (int(match[1]), int(match[2])) if match else None
