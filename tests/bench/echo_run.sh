# echo_run.sh - one echo measurement, shared by bench_echo.sh and echo_mt.sh
# (sourced, not run). The caller sets PEERS, BUILD, DUR, WARM, PORT, RAW,
# SRV_PIN and LOAD_PIN (a taskset prefix, or empty for none) and defines
# server_cmd LABEL PORT; one LABEL CONNS REP then starts a fresh server,
# runs ../shared/bench's echo_load against it and appends a line to $RAW:
# LABEL, CONNS, REP, the load generator's exit status, the server's CPU %
# (its process and its children) and the generator's RESULT fields.
# all_rounds runs one for every server in SERVERS at every CONNS, REPS
# times, rotating the server order each time.

log() { printf '%s\n' "$*" >&2; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
ticks() {
    local t=0 p
    for p in "$1" $(pgrep -P "$1"); do
        t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo $t
}
TCK=$(getconf CLK_TCK)
SP=
trap '[ -n "$SP" ] && kill $SP 2>/dev/null' EXIT

one() { # LABEL CONNS REP
    PORT=$((PORT + 1))
    $SRV_PIN $(server_cmd "$1" $PORT) >/dev/null 2>&1 &
    SP=$!
    if ! wait_port $PORT; then log "  $1: server did not come up"; kill $SP; SP=; return; fi
    $LOAD_PIN "$PEERS/build/echo_load" -q -p $PORT -c "$2" -d "$DUR" -w "$WARM" >"$BUILD/load.out" &
    local lp=$! a b
    sleep "$WARM"; a=$(ticks $SP); sleep "$DUR"; b=$(ticks $SP)
    wait $lp; local rc=$?
    local res; res=$(grep '^RESULT' "$BUILD/load.out" | tail -1)
    local cpu; cpu=$(awk -v a="$a" -v b="$b" -v t="$TCK" -v d="$DUR" 'BEGIN{printf "%.0f", 100*(b-a)/t/d}')
    printf '%s\t%s\t%s\t%s\tsrv_cpu=%s %s\n' "$1" "$2" "$3" "$rc" "$cpu" "$res" >>"$RAW"
    log "$(printf '  rep%s %-26s c=%-5s rc=%s srv_cpu=%3s%% %s' "$3" "$1" "$2" "$rc" "$cpu" "$(cut -c8-110 <<<"$res")")"
    kill $SP 2>/dev/null; wait $SP 2>/dev/null; SP=
}

all_rounds() {
    local ns=${#SERVERS[@]} rot=0 rep c k
    for rep in $(seq "$REPS"); do
        for c in $CONNS; do
            for k in $(seq 0 $((ns - 1))); do one "${SERVERS[$(((k + rot) % ns))]}" "$c" "$rep"; done
            rot=$((rot + 1))
        done
    done
}
