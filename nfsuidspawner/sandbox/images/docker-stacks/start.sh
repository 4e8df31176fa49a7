#!/bin/bash
# Sandbox stand-in for the docker-stacks entrypoint start.sh, following its documented
# behaviour (see facts.md): the _START_SH_EXECUTED guard, hooks, user rename and re-creation with
# NB_UID/NB_GID using the real shadow-utils on the container's private /etc, home handling, sudo's
# secure_path, then the switch to NB_USER with the real sudo. sudo stays on as the command's
# (root) parent and relays signals to it; the command has the user's uid, gid and groups from
# /etc/group (initgroups) and no capabilities.
set -e

log() { echo "[start.sh] $*" >&2; }

# shellcheck source=run-hooks.sh
source /usr/local/bin/run-hooks.sh

if [ $# -gt 0 ]; then
    cmd=("$@")
else
    cmd=(start-notebook.py)
fi

# start.sh is the ENTRYPOINT: started again (a CMD that names it), it only runs its command.
if [ "${_START_SH_EXECUTED}" = 1 ]; then
    log "WARNING: start.sh is the default ENTRYPOINT, do not include it in CMD"
    log "Executing the command: ${cmd[*]}"
    exec "${cmd[@]}"
else
    export _START_SH_EXECUTED=1
fi

run_hooks /usr/local/bin/start-notebook.d

if [ "$(id -u)" = 0 ]; then
    NB_USER="${NB_USER:-jovyan}"
    NB_UID="${NB_UID:-1000}"
    NB_GID="${NB_GID:-100}"

    if id jovyan > /dev/null 2>&1; then
        if [ "$NB_USER" != jovyan ]; then
            log "Renaming the jovyan user to ${NB_USER} (home /home/${NB_USER})"
            usermod --home "/home/${NB_USER}" --login "${NB_USER}" jovyan
        fi
    elif ! id -u "${NB_USER}" > /dev/null 2>&1; then
        log "ERROR: neither jovyan nor '${NB_USER}' exists; cannot continue"
        exit 1
    fi

    if [ "${NB_UID}" != "$(id -u "${NB_USER}")" ] || [ "${NB_GID}" != "$(id -g "${NB_USER}")" ]; then
        log "Setting ${NB_USER}'s uid:gid to ${NB_UID}:${NB_GID}"
        if [ "${NB_GID}" != "$(id -g "${NB_USER}")" ]; then
            groupadd --force --gid "${NB_GID}" --non-unique "${NB_GROUP:-${NB_USER}}"
        fi
        userdel "${NB_USER}"
        useradd --no-log-init --home "/home/${NB_USER}" --shell /bin/bash \
            --uid "${NB_UID}" --gid "${NB_GID}" --groups 100 "${NB_USER}"
    fi

    if [ "${NB_USER}" != jovyan ]; then
        # An existing path (a symlink to the user's NFS directory included) is left alone.
        if [ ! -e "/home/${NB_USER}" ]; then
            log "Copying /home/jovyan to /home/${NB_USER}"
            mkdir "/home/${NB_USER}"
            if cp -a /home/jovyan/. "/home/${NB_USER}/"; then
                chown -R "${NB_UID}:${NB_GID}" "/home/${NB_USER}"
            else
                log "Copy failed; linking /home/${NB_USER} to /home/jovyan instead"
                rm -rf "/home/${NB_USER}"
                ln -s /home/jovyan "/home/${NB_USER}"
            fi
        fi
        if [[ "${PWD}/" == /home/jovyan/* ]]; then
            new_wd="/home/${NB_USER}/${PWD:13}"
            log "Changing working directory to ${new_wd}"
            cd "${new_wd}"
        fi
    fi

    if [ "${CHOWN_HOME}" = 1 ] || [ "${CHOWN_HOME}" = yes ]; then
        log "Changing ownership of /home/${NB_USER} to ${NB_UID}:${NB_GID} (${CHOWN_HOME_OPTS})"
        # shellcheck disable=SC2086
        chown ${CHOWN_HOME_OPTS} "${NB_UID}:${NB_GID}" "/home/${NB_USER}"
    fi
    if [ -n "${CHOWN_EXTRA}" ]; then
        for path in ${CHOWN_EXTRA//,/ }; do
            # shellcheck disable=SC2086
            chown ${CHOWN_EXTRA_OPTS} "${NB_UID}:${NB_GID}" "${path}"
        done
    fi

    export XDG_CACHE_HOME="/home/${NB_USER}/.cache"
    # sudo finds the command in its secure_path, so ${CONDA_DIR}/bin goes first there.
    sed -nE "s#^Defaults\s+secure_path\s*=\s*\"?([^\"]+)\"?#Defaults secure_path=\"${CONDA_DIR}/bin:\1\"#p" \
        /etc/sudoers > /etc/sudoers.d/path
    if [ "${GRANT_SUDO}" = 1 ] || [ "${GRANT_SUDO}" = yes ]; then
        log "Granting ${NB_USER} passwordless sudo rights"
        echo "${NB_USER} ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/added-by-start-script
    fi

    run_hooks /usr/local/bin/before-notebook.d

    log "Running as ${NB_USER}: ${cmd[*]}"
    # --preserve-env keeps the environment but for sudo's env_delete list (LD_*, PYTHONPATH, ...),
    # hence the three passed again; --set-home sets HOME (and sudo USER, LOGNAME) for NB_USER.
    exec sudo --preserve-env --set-home --user "${NB_USER}" \
        LD_LIBRARY_PATH="${LD_LIBRARY_PATH}" \
        PATH="${PATH}" \
        PYTHONPATH="${PYTHONPATH:-}" \
        "${cmd[@]}"
else
    if ! whoami > /dev/null 2>&1 || [ "${NB_USER:-jovyan}" != "$(id -un)" ]; then
        if [ -w /etc/passwd ]; then
            log "Adding passwd entry ${NB_USER:-jovyan}:$(id -u):$(id -g)"
            grep -v "^${NB_USER:-jovyan}:" /etc/passwd > /tmp/passwd.new || true
            echo "${NB_USER:-jovyan}:x:$(id -u):$(id -g):,,,:/home/jovyan:/bin/bash" >> /tmp/passwd.new
            cat /tmp/passwd.new > /etc/passwd
            rm -f /tmp/passwd.new
        else
            log "WARNING: /etc/passwd is not writable; uid $(id -u) keeps its current name"
        fi
    fi
    if [ -n "${NB_UID}" ] && [ "${NB_UID}" != "$(id -u)" ]; then
        log "WARNING: NB_UID=${NB_UID} ignored: the container runs as uid $(id -u), not root"
    fi
    if [ -n "${NB_GID}" ] && [ "${NB_GID}" != "$(id -g)" ]; then
        log "WARNING: NB_GID=${NB_GID} ignored: the container runs as gid $(id -g), not root"
    fi

    run_hooks /usr/local/bin/before-notebook.d

    log "Executing: ${cmd[*]}"
    exec "${cmd[@]}"
fi
