#!/usr/bin/env bash
# bench/zero-downtime.sh: deploy the Laravel example again and again under
# HTTP load and count what visitors saw.
#
# On this machine, all on 127.0.0.1: sshd (a deploy user, throwaway keys),
# nginx + php-fpm (static pool of 4, $realpath_root) serving
# <site>/current/public, and atomic-deploy (built from this checkout)
# deploying examples/laravel with --preset laravel over SSH, each deploy
# with a changed config/example.php.
#
#   1. idle:      wrk -t2 -c16 --latency for ZDT_IDLE seconds, no deploys;
#   2. deploying: the same wrk for ZDT_SWITCH seconds while deploys run back
#                 to back (migrate, config/route/view:cache, switch,
#                 queue:restart, prune);
#   3. switching: the same wrk for ZDT_FLIP seconds while `atomic-deploy
#                 rollback --release-id` flips current between the last two
#                 releases back to back: the switch alone, without the CPU
#                 the hooks of a deploy take from the web server;
#   4. renaming:  the same wrk for ZDT_RENAME seconds while a shell loop (as
#                 the deploy user, no SSH) renames a new symlink over
#                 current 10 times a second, alternating between the same
#                 two releases: the cost of rename(2) switching itself,
#                 without the CPU the tool and sshd use on this machine.
# wrk's Lua (bench/zdt/count.lua) counts every response by status and by the
# release id in its body. Prints requests, non-2xx, socket errors, deploys,
# releases seen and p50/p99 latency for both phases; exits 1 if any request
# failed or any deploy failed. The proof with per-request timing (every
# answer came from a release live at that moment) is the Go test
# test/laravel (TestZeroDowntimeUnderLoad).
#
# Needs root (a deploy user, sshd) and: openssh-server nginx php-fpm php-cli
# php-sqlite3 php-laravel-framework wrk, and Go. Environment:
#   ZDT_IDLE=10 ZDT_SWITCH=30 ZDT_FLIP=10 ZDT_RENAME=10   phase lengths (s)
#   ZDT_THREADS=2 ZDT_CONNS=16  wrk -t / -c
#   ZDT_TIMEOUT=10s             wrk --timeout: slower answers count as errors
#   ZDT_USER=atomic-zdt         deploy user (created if missing)
#   ZDT_KEEP=1                  keep the work directory
#   BENCH_OUT=bench/out         where the report is also written
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/zdt/servers.sh
. "$BENCH_DIR/zdt/servers.sh"

IDLE=${ZDT_IDLE:-10}
SWITCH=${ZDT_SWITCH:-30}
FLIP=${ZDT_FLIP:-10}
RENAME=${ZDT_RENAME:-10}
THREADS=${ZDT_THREADS:-2}
CONNS=${ZDT_CONNS:-16}
TIMEOUT=${ZDT_TIMEOUT:-10s}
USER_NAME=${ZDT_USER:-atomic-zdt}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}

[[ $(id -u) == 0 ]] || zdt_die "needs root (creates a deploy user and runs sshd)"
missing=()
for c in /usr/sbin/sshd ssh-keygen nginx php-fpm8.2 php wrk go; do
	command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[[ -f /usr/share/php/Illuminate/autoload.php ]] || missing+=(php-laravel-framework)
((${#missing[@]} == 0)) || zdt_die "missing: ${missing[*]} (apt-get install -y openssh-server nginx php-fpm php-cli php-sqlite3 php-laravel-framework wrk)"

ZDT_DIR=$(mktemp -d /var/tmp/atomic-deploy-zdt.XXXXXX)
chmod 755 "$ZDT_DIR"
cleanup() {
	local rc=$?
	set +e
	zdt_stop_all
	if [[ ${ZDT_KEEP:-} == 1 ]]; then
		zdt_log "kept $ZDT_DIR"
	else
		# A lock holder may still make the spare after the last deploy.
		find "$ZDT_DIR" -maxdepth 4 -path '*/.atomic-deploy/lock.flock' -exec flock -w 60 {} true \; 2>/dev/null
		rm -rf "$ZDT_DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

zdt_log "building atomic-deploy"
(cd "$REPO_DIR" && CGO_ENABLED=0 go build -o "$ZDT_DIR/atomic-deploy" .)
BIN=$ZDT_DIR/atomic-deploy

zdt_user "$USER_NAME"
GROUP_NAME=$(id -gn "$USER_NAME")
zdt_sshd "$USER_NAME"
zdt_log "sshd on 127.0.0.1:$SSHD_PORT, deploy user $USER_NAME"

SITE=$ZDT_DIR/site
SRC=$ZDT_DIR/src
install -d -o "$USER_NAME" -g "$GROUP_NAME" -m 755 "$SITE" "$SITE/shared"
cp -a "$REPO_DIR/examples/laravel" "$SRC"
# Whatever a local `php artisan` left in the checkout is not part of the app.
rm -rf "$SRC/.env" "$SRC"/storage/*.sqlite "$SRC"/bootstrap/cache/*.php "$SRC/bootstrap/cache/views"
key="base64:$(head -c 32 /dev/urandom | base64)"
sed "s|^APP_KEY=.*|APP_KEY=$key|; s|^LOG_LEVEL=.*|LOG_LEVEL=error|" "$SRC/.env.example" >"$ZDT_DIR/env"
install -m 600 -o "$USER_NAME" -g "$GROUP_NAME" "$ZDT_DIR/env" "$SITE/shared/.env"

zdt_web "$SITE" "$USER_NAME"
URL=http://127.0.0.1:$HTTP_PORT/
zdt_log "nginx on $URL (php-fpm: ${ZDT_FPM_WORKERS:-4} workers as $USER_NAME)"

BUILD=0
DEPLOYED=()    # release ids
DEPLOY_MS=()   # wall time of each successful deploy
FAILED=0
# deploy: one run of the CLI with a new build number; logs to $ZDT_DIR/deploy-N.log.
deploy() {
	BUILD=$((BUILD + 1))
	printf "<?php\n\nreturn [\n    'build' => %d,\n];\n" "$BUILD" >"$SRC/config/example.php"
	local log=$ZDT_DIR/deploy-$BUILD.log start end id
	start=$(date +%s%N)
	if GITHUB_SHA=zdt-build-$BUILD "$BIN" deploy \
		--host "$USER_NAME@127.0.0.1:$SSHD_PORT" --path "$SITE" \
		--private-key "$(cat "$CLIENT_KEY")" --known-hosts "$(cat "$KNOWN_HOSTS")" \
		--source "$SRC" --preset laravel >"$log" 2>&1; then
		end=$(date +%s%N)
		id=$(sed -n 's/^release-id: //p' "$log" | tail -1)
		DEPLOYED+=("$id")
		DEPLOY_MS+=($(((end - start) / 1000000)))
		return 0
	fi
	FAILED=$((FAILED + 1))
	zdt_log "deploy $BUILD failed:"
	tail -5 "$log" >&2
	return 1
}

zdt_log "first deploy"
deploy || zdt_die "the first deploy failed (log: $ZDT_DIR/deploy-1.log)"
first=$(php -r "echo file_get_contents('$URL');")
[[ $first == *"\"release\":\"${DEPLOYED[0]}\""* ]] || zdt_die "GET / answered $first, want release ${DEPLOYED[0]}"

# Warm opcache and the workers before measuring.
wrk -t"$THREADS" -c"$CONNS" -d2s "$URL" >/dev/null

LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
zdt_log "phase 1: ${IDLE}s of load, no deploys"
wrk -t"$THREADS" -c"$CONNS" -d"${IDLE}s" --timeout "$TIMEOUT" --latency -s "$BENCH_DIR/zdt/count.lua" "$URL" >"$ZDT_DIR/idle.txt"

zdt_log "phase 2: ${SWITCH}s of load, deploying back to back"
first_switch=${#DEPLOYED[@]}
wrk -t"$THREADS" -c"$CONNS" -d"${SWITCH}s" --timeout "$TIMEOUT" --latency -s "$BENCH_DIR/zdt/count.lua" "$URL" >"$ZDT_DIR/switch.txt" &
wrk_pid=$!
sleep 0.5
while kill -0 "$wrk_pid" 2>/dev/null; do
	deploy || true
done
wait "$wrk_pid"
switch_ids=("${DEPLOYED[@]:first_switch}")

zdt_log "phase 3: ${FLIP}s of load, switching between two releases back to back"
flip_a=${DEPLOYED[${#DEPLOYED[@]} - 2]}
flip_b=${DEPLOYED[${#DEPLOYED[@]} - 1]}
FLIPS=0
FLIP_FAILED=0
wrk -t"$THREADS" -c"$CONNS" -d"${FLIP}s" --timeout "$TIMEOUT" --latency -s "$BENCH_DIR/zdt/count.lua" "$URL" >"$ZDT_DIR/flip.txt" &
wrk_pid=$!
sleep 0.5
target=$flip_a
while kill -0 "$wrk_pid" 2>/dev/null; do
	if "$BIN" rollback --host "$USER_NAME@127.0.0.1:$SSHD_PORT" --path "$SITE" \
		--private-key "$(cat "$CLIENT_KEY")" --known-hosts "$(cat "$KNOWN_HOSTS")" \
		--release-id "$target" >"$ZDT_DIR/flip.log" 2>&1; then
		FLIPS=$((FLIPS + 1))
	else
		FLIP_FAILED=$((FLIP_FAILED + 1))
		zdt_log "switch to $target failed:"
		tail -3 "$ZDT_DIR/flip.log" >&2
	fi
	if [[ $target == "$flip_a" ]]; then target=$flip_b; else target=$flip_a; fi
done
wait "$wrk_pid"

zdt_log "phase 4: ${RENAME}s of load, renaming current 10 times a second (no SSH)"
wrk -t"$THREADS" -c"$CONNS" -d"${RENAME}s" --timeout "$TIMEOUT" --latency -s "$BENCH_DIR/zdt/count.lua" "$URL" >"$ZDT_DIR/rename.txt" &
wrk_pid=$!
sleep 0.5
# shellcheck disable=SC2016 # expanded by the inner shell
RENAMES=$(runuser -u "$USER_NAME" -- bash -c '
	cd "$1" || exit 1
	n=0
	end=$((SECONDS + $2))
	while ((SECONDS < end)); do
		if ((n % 2)); then id=$3; else id=$4; fi
		ln -s "releases/$id" .current.bench && mv -T .current.bench current || exit 1
		n=$((n + 1))
		sleep 0.1
	done
	echo "$n"
' rename "$SITE" "$((RENAME - 1))" "$flip_a" "$flip_b") || zdt_log "the rename loop failed"
wait "$wrk_pid"
RENAMES=${RENAMES:-0}
# Leave current where the tool's log says it is.
"$BIN" rollback --host "$USER_NAME@127.0.0.1:$SSHD_PORT" --path "$SITE" \
	--private-key "$(cat "$CLIENT_KEY")" --known-hosts "$(cat "$KNOWN_HOSTS")" \
	--release-id "$flip_b" >/dev/null 2>&1 || true

# val FILE KEY: a "zdt KEY VALUE" line printed by count.lua.
val() { awk -v k="$2" '$1 == "zdt" && $2 == k { print $3; exit }' "$1"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'; }
rate() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.0f", n / (us / 1e6) }'; }
seen() { awk '$1 == "zdt" && $2 == "release" { n++ } END { print n + 0 }' "$1"; }

unknown=0
while read -r id; do
	[[ " ${DEPLOYED[*]} " == *" $id "* ]] || unknown=$((unknown + 1))
done < <(awk '$1 == "zdt" && $2 == "release" { print $3 }' "$ZDT_DIR/idle.txt" "$ZDT_DIR/switch.txt" "$ZDT_DIR/flip.txt" "$ZDT_DIR/rename.txt")

median_ms=$(printf '%s\n' "${DEPLOY_MS[@]:first_switch}" | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print 0 }')

# Columns of the report, called through each() with a wrk output file.
# shellcheck disable=SC2317
get() { val "$1" "$2"; }
# shellcheck disable=SC2317
rps() { rate "$(val "$1" requests)" "$(val "$1" duration_us)"; }
# shellcheck disable=SC2317
lat() { ms "$(val "$1" "$2")"; }

report() {
	local i=$ZDT_DIR/idle.txt s=$ZDT_DIR/switch.txt f=$ZDT_DIR/flip.txt r=$ZDT_DIR/rename.txt
	row() { printf '  %-30s %10s %11s %11s %11s\n' "$@"; }
	each() { row "$1" "$("$2" "$i" "${@:3}")" "$("$2" "$s" "${@:3}")" "$("$2" "$f" "${@:3}")" "$("$2" "$r" "${@:3}")"; }
	echo "Zero-downtime bench: examples/laravel, --preset laravel, deployed over SSH to 127.0.0.1"
	echo "  $(nproc) cores (load average before the run: $LOADAVG_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg))"
	echo "  $(nginx -v 2>&1 | sed 's/.*: //'); PHP $(php -r 'echo PHP_VERSION;') php-fpm static ${ZDT_FPM_WORKERS:-4} workers, opcache on, \$realpath_root; wrk -t$THREADS -c$CONNS on GET /"
	echo
	row "" "idle" "deploying" "switching" "renaming"
	row "duration" "${IDLE} s" "${SWITCH} s" "${FLIP} s" "${RENAME} s"
	each "requests" get requests
	each "requests/s" rps
	each "non-2xx responses" get non2xx
	each "socket errors (timeout $TIMEOUT)" get socket_errors
	each "bodies without release id" get unparsed
	each "latency p50" lat p50_us
	each "latency p99" lat p99_us
	each "latency max" lat max_us
	each "releases that answered" seen
	row "deploys / switches (failed)" "-" "${#switch_ids[@]} ($FAILED)" "$FLIPS ($FLIP_FAILED)" "$RENAMES"
	row "deploy wall time, median" "-" "$(awk -v m="$median_ms" 'BEGIN { printf "%.2f s", m / 1000 }')" "-" "-"
	echo
	echo "  answers from a release that was never deployed: $unknown"
	echo "  deploying = full deploys (upload, 6 artisan commands before and 1 after the switch,"
	echo "  prune); switching = rollback --release-id between two releases over SSH (the switch"
	echo "  alone, plus the tool's and sshd's CPU); renaming = ln -s + mv -T on the server, no tool."
}

mkdir -p "$OUT_DIR"
out=$OUT_DIR/zero-downtime-$(date -u +%Y%m%dT%H%M%SZ).txt
report | tee "$out"
{
	echo
	echo "--- wrk, idle"
	grep -v '^zdt ' "$ZDT_DIR/idle.txt"
	echo "--- wrk, deploying"
	grep -v '^zdt ' "$ZDT_DIR/switch.txt"
	echo "--- wrk, switching"
	grep -v '^zdt ' "$ZDT_DIR/flip.txt"
	echo "--- wrk, renaming"
	grep -v '^zdt ' "$ZDT_DIR/rename.txt"
} >>"$out"
zdt_log "report: $out"

bad=$((unknown + FAILED + FLIP_FAILED))
for f in idle switch flip rename; do
	bad=$((bad + $(val "$ZDT_DIR/$f.txt" non2xx) + $(val "$ZDT_DIR/$f.txt" socket_errors) + $(val "$ZDT_DIR/$f.txt" unparsed)))
done
if ((bad > 0 || ${#switch_ids[@]} == 0 || FLIPS == 0 || RENAMES == 0)); then
	zdt_log "FAILED: $bad bad answers or failed deploys"
	exit 1
fi
