# Shared by the CI scripts (sourced, not run).

# step NAME COMMAND...: run COMMAND, print its wall time, record it in STEP_TIMES.
# A failing COMMAND stops the script that called step (set -e).
STEP_TIMES=()
step() {
    local name=$1 start=$EPOCHREALTIME secs
    shift
    echo "=== $name"
    "$@"
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    STEP_TIMES+=("$(printf '%7s s  %s' "$secs" "$name")")
    echo "=== $name: $secs s"
}

# print_times TOTAL_START: every recorded step and the total since TOTAL_START ($EPOCHREALTIME).
print_times() {
    echo "=== step times"
    printf '%s\n' "${STEP_TIMES[@]}"
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%7.1f s  total\n", b - a }'
}

# copy_tree DEST: the repository's sources (tracked and untracked, not ignored: no build
# outputs, no generated C) copied to DEST, so that a build there cannot touch this tree.
copy_tree() {
    mkdir -p "$1"
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$1"
}
