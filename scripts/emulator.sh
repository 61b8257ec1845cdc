# Sourced by the stage scripts: start emulators and stop them at the end.
#   start_emulator VAR NAME [serve args...]
# starts `target/release/fal-realtime serve --port 0 ARGS` (log in
# $TMP/NAME.emu.log), records its pid in EMU_PIDS and sets VAR to its
# host:port; waits at most 10 s and returns 1 (log printed) if it did not
# start. Runs in the caller's shell, so the pid is kept (a `$(...)` would
# lose it). stop_emulators kills and reaps them all. Needs ROOT and TMP.
EMU_PIDS=()
start_emulator() {
  local var=$1 name=$2 log host=""
  shift 2
  log="$TMP/$name.emu.log"
  "$ROOT/target/release/fal-realtime" serve --port 0 "$@" >"$log" 2>&1 &
  EMU_PIDS+=($!)
  for _ in $(seq 1 100); do
    host="$(sed -n 's/.*ws host \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -1)"
    [ -n "$host" ] && break
    sleep 0.1
  done
  printf -v "$var" '%s' "$host"
  if [ -z "$host" ]; then
    cat "$log"
    return 1
  fi
}
stop_emulators() {
  local p
  for p in "${EMU_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  EMU_PIDS=()
}
