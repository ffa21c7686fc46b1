#!/usr/bin/env bash
# Configures and builds impq into ./build (RelWithDebInfo, Ninja).
#
#   scripts/build.sh [--target NAME]... [CMAKE_ARG...]
#
# --target builds only NAME (repeatable; default: everything). scripts/run.sh builds `impq`,
# scripts/test.sh everything, both with the same configure flags in the same ./build, so the
# second reuses every object the first built. Other arguments go to cmake.
#
# Output: one line per stage (configure, build) with how far along it is — updated in place on
# a terminal, every ~10% otherwise. The compiler's output goes to build/build.log (the path is
# printed); on a failure the first error block of that log is printed and the exit status is
# non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=()
cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) targets+=("$2"); shift 2 ;;
    --target=*) targets+=("${1#--target=}"); shift ;;
    *) cmake_args+=("$1"); shift ;;
  esac
done

mkdir -p build
log="build/build.log"
: >"$log"
tty=0
if [ -t 1 ]; then tty=1; fi

clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# The first error of the log: the step that failed (ninja's FAILED: line), then the first
# message that says error (compiler, linker, CMake) with the "In file included from" lines
# before it and its notes after it, up to the next error, status line or 25 lines.
first_error() {
  awk '
    /^FAILED: / { if (found) exit; failed = $0; skip = 1; ctx = ""; n = 0; next }
    skip { skip = 0; next }  # the failed command line
    /^\[[0-9]+\/[0-9]+\] / || /^ninja: / { if (found) exit; ctx = ""; n = 0; next }
    /error:|CMake Error|undefined reference|multiple definition/ {
      if (found) exit
      found = 1; if (failed != "") print failed; printf "%s", ctx; print; shown = 1; next
    }
    found { print; if (++shown >= 25) exit; next }
    /^In file included from|^                 from / { ctx = ctx $0 "\n"; next }
    { ctx = "" }
  ' "$1"
}

fail() {  # fail STAGE START
  local took=$((SECONDS - $2))
  if [ "$tty" = 1 ]; then printf '\r\033[K'; fi
  echo "$1: FAILED after $(clock "$took"); first error (full log: $log):" >&2
  first_error "$log" | sed 's/^/  /' >&2
  exit 1
}

# ---- configure ----
start=$SECONDS
echo "configure: cmake -S . -B build -G Ninja${cmake_args[*]:+ ${cmake_args[*]}} (log: $log)"
if ! cmake -S . -B build -G Ninja "${cmake_args[@]}" >>"$log" 2>&1; then fail configure "$start"; fi
echo "configure: done in $(clock $((SECONDS - start)))"

# ---- build ----
start=$SECONDS
what="${targets[*]:-all targets}"
line() { printf 'build (%s): %s' "$what" "$1"; }
# NINJA_STATUS makes each edge start a line "[finished/total] description" in ninja's output;
# only those lines are read here, everything goes to the log.
set +e
NINJA_STATUS='[%f/%t] ' ninja -C build "${targets[@]}" 2>&1 | {
  next_pct=10
  shown=0
  while IFS= read -r l; do
    printf '%s\n' "$l" >>"$log"
    if [[ "$l" =~ ^\[([0-9]+)/([0-9]+)\]\  ]]; then
      f=${BASH_REMATCH[1]} t=${BASH_REMATCH[2]}
      pct=$((100 * f / t))
      msg="$f/$t steps ($pct%), $(clock $((SECONDS - start))) elapsed"
      if [ "$tty" = 1 ]; then
        printf '\r\033[K%s' "$(line "$msg")"
        shown=1
      elif [ "$pct" -ge "$next_pct" ]; then
        line "$msg"; echo
        next_pct=$(((pct / 10 + 1) * 10))
      fi
    fi
  done
  if [ "$shown" = 1 ]; then printf '\r\033[K'; fi
}
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then fail "build ($what)" "$start"; fi
if grep -q '^ninja: no work to do' "$log"; then
  line "up to date"; echo
else
  line "done in $(clock $((SECONDS - start)))"; echo
fi
