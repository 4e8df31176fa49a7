#!/bin/bash
# Sandbox stand-in: source (*.sh) or run (executable) every file of a hook directory, in order.
# Meant to be sourced by start.sh so that an `export` in a *.sh hook reaches the final command.

run_hooks() {
    local dir="$1" hook
    [ -d "$dir" ] || return 0
    echo "Running hooks in: ${dir} as uid: $(id -u) gid: $(id -g)"
    for hook in "$dir"/*; do
        [ -e "$hook" ] || continue
        case "$hook" in
            *.sh)
                echo "Sourcing shell script: ${hook}"
                # shellcheck disable=SC1090
                if ! source "$hook"; then
                    echo "ERROR: ${hook} failed; the container exits" >&2
                    exit 1
                fi
                ;;
            *)
                if [ -x "$hook" ]; then
                    echo "Running executable: ${hook}"
                    "$hook" || { echo "ERROR: ${hook} failed; the container exits" >&2; exit 1; }
                else
                    echo "Ignoring non-executable: ${hook}"
                fi
                ;;
        esac
    done
    echo "Done running hooks in: ${dir}"
}
