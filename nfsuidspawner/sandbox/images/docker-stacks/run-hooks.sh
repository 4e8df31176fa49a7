#!/bin/bash
# Sandbox stand-in: source (*.sh) or run (executable) every file of a hook directory, in order.
# Meant to be sourced by start.sh so that an `export` in a *.sh hook reaches the final command.
# As the image's own: a failed hook is logged and the next one runs (an `exit` in a sourced
# hook still ends start.sh).

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
                source "$hook" || echo "ERROR: ${hook} has failed, continuing execution" >&2
                ;;
            *)
                if [ -x "$hook" ]; then
                    echo "Running executable: ${hook}"
                    "$hook" || echo "ERROR: ${hook} has failed, continuing execution" >&2
                else
                    echo "Ignoring non-executable: ${hook}"
                fi
                ;;
        esac
    done
    echo "Done running hooks in: ${dir}"
}
