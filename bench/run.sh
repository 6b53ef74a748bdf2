#!/usr/bin/env bash
# bench/run.sh — atomic-deploy against tar|ssh, rsync and the cp -al floor on
# one emulated link (100 Mbit tbf, ~0/20/50 ms RTT via a delay proxy), to tmpfs
# and ext4 destinations, plus initial uploads over an unshaped link (CPU guard). Prints a Markdown table of medians and PASS/FAIL per
# target; writes everything to bench/out/. Needs root (netns, tc, mount).
#
#   bench/run.sh                  full run (3 runs each, cpu/~0/20/50 ms, tmpfs + ext4)
#   BENCH_QUICK=1 bench/run.sh    1 run, cpu/~20 ms
# Environment: BENCH_RUNS (default 3), BENCH_RTTS ("cpu 0 20 50"; "cpu" is the
# unshaped link without delay, initial uploads only), BENCH_FS
# ("tmpfs ext4"), BENCH_RSS=1 adds the 100,000-file peak-RSS check (bench/rss.sh, ~1 min),
# BENCH_KEEP=1 keeps the work dir, BENCH_OUT (bench/out), BENCH_CLEAN_HOME=0
# lets sshd start commands with this machine's own ~/.bashrc (see lib.sh).
#
# All traffic stays inside two network namespaces this script creates (and
# loopback inside them); they, the tmpfs, sshd and the proxies are removed on exit.
set -Eeuo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'log "stopped: exit $? at line $LINENO: $BASH_COMMAND"' ERR

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	RUNS=${BENCH_RUNS:-1}
	RTTS=${BENCH_RTTS:-"cpu 20"}
	RSS=${BENCH_RSS:-0}
else
	RUNS=${BENCH_RUNS:-3}
	RTTS=${BENCH_RTTS:-"cpu 0 20 50"}
	RSS=${BENCH_RSS:-0}
fi
FSS=${BENCH_FS:-"tmpfs ext4"}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || die "BENCH_RUNS must be 1-99"
for r in $RTTS; do [[ $r =~ ^([0-9]{1,3}|cpu)$ ]] || die "BENCH_RTTS: $r is not a number of ms or cpu"; done
for f in $FSS; do [[ $f == tmpfs || $f == ext4 ]] || die "BENCH_FS: $f is not tmpfs or ext4"; done

START=$SECONDS
bench_require
# shellcheck disable=SC2086
bench_setup $RTTS
RESULTS=$OUT_DIR/results.tsv
LOGF=$OUT_DIR/commands.log
: >"$RESULTS"
: >"$LOGF"

# ---- workload -------------------------------------------------------------
SRC=$W/t/src
mkdir -p "$SRC"
log "workload: 5,000 files of 2-20 KB, 50 changed, fresh-build variant"
"$W/bin/benchtool" gen -out "$SRC/base" -files 5000 -min 2048 -max 20480 -seed 1 >"$W/gen.out"
cp -a "$SRC/base" "$SRC/kept"
"$W/bin/benchtool" change -dir "$SRC/kept" -n 50 -seed 2 -list "$SRC/changed.list" >"$W/change.out"
cp -a "$SRC/kept" "$SRC/fresh"
sleep 1 # fresh mtimes differ from kept's, whatever the clock granularity
find "$SRC/fresh" -exec touch {} +
read -r FILES BYTES < <(sed -n 's/^files=\([0-9]*\) dirs=[0-9]* bytes=\([0-9]*\)/\1 \2/p' "$W/gen.out")
read -r CHANGED CHANGED_BYTES < <(sed -n 's/^changed=\([0-9]*\) bytes=\([0-9]*\)/\1 \2/p' "$W/change.out")

cat >"$OUT_DIR/meta.env" <<EOF
files=$FILES
bytes=$BYTES
changed_files=$CHANGED
changed_bytes=$CHANGED_BYTES
runs=$RUNS
link=veth + tbf 100mbit both ways, delay proxy in the client namespace
ad_rev=$AD_REV
ssh=$(ssh -V 2>&1 | cut -d, -f1), rsync $(rsync --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
cpu=$(nproc) cores $(sed -n '/^model name/{s/^model name[[:space:]]*: //p;q}' /proc/cpuinfo)
date=$(date -u +%Y-%m-%dT%H:%MZ)
nice=$(nice)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
EOF

# ---- measuring --------------------------------------------------------------
# measure FS RTT METHOD RUN EXTRA_CMD -- COMMAND...: runs COMMAND in the client
# namespace, timed, and appends a line to results.tsv. EXTRA_CMD (a function
# name or ":") runs afterwards and may set EXTRA to key=value,...
measure() {
	local fs=$1 rtt=$2 method=$3 run=$4 after=$5
	shift 6
	sync
	wait_quiet
	local b0 b1 t0 t1 status
	b0=$(proxy_bytes "$rtt")
	printf '\n### %s rtt=%s %s run %s\n' "$fs" "$rtt" "$method" "$run" >>"$LOGF"
	t0=$EPOCHREALTIME
	set +e
	timeout -k 5 "$CMD_TIMEOUT" /usr/bin/time -f '%U %S %M' -o "$W/time.out" \
		ip netns exec "$NSC" "$@" >>"$LOGF" 2>&1
	status=$?
	set -e
	t1=$EPOCHREALTIME
	b1=$(proxy_bytes "$rtt")
	local user=0 sys=0 rss=0
	if [[ -s $W/time.out ]]; then read -r user sys rss < <(tail -1 "$W/time.out"); fi
	[[ $user =~ ^[0-9.]+$ ]] || { user=0 sys=0 rss=0; }
	EXTRA="status=$status,busy=$BUSY,niced=$NICED"
	$after
	local wall up down
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	read -r up down < <(awk -v a="$b0" -v b="$b1" 'BEGIN { split(a, x, " "); split(b, y, " "); print y[1] - x[1], y[2] - x[2] }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fs" "${rtt/cpu/-1}" "$method" "$run" "$wall" "$user" "$sys" "$rss" "$up" "$down" "$EXTRA" >>"$RESULTS"
	if [[ $status != 0 ]]; then
		log "$fs rtt=$rtt $method run $run: exit $status (see $LOGF)"
	else
		log "$fs rtt=$rtt $method run $run: ${wall}s, $(((up + down) / 1000)) kB, CPU before: ${BUSY}% busy, ${NICED}% niced"
	fi
}

# After an atomic-deploy run: manifest size of the live release and what it
# says it uploaded/reused (the terminal log ends with the outputs).
ad_extra() {
	local cur
	cur=$(readlink "$D/ad/current" 2>/dev/null || true)
	if [[ -n $cur ]]; then
		EXTRA+=",manifest=$(stat -c %s "$D/ad/.atomic-deploy/manifests/${cur#releases/}.json.gz" 2>/dev/null || echo 0)"
	fi
	local up reused
	local last # the log of this command: from the last "### " header on
	last=$(awk '/^### / { b = "" } { b = b $0 "\n" } END { printf "%s", b }' "$LOGF")
	up=$(grep -o 'files-uploaded: [0-9]*' <<<"$last" | head -1 | grep -o '[0-9]*$' || true)
	reused=$(grep -o 'files-reused: [0-9]*' <<<"$last" | head -1 | grep -o '[0-9]*$' || true)
	EXTRA+=",uploaded=${up:-?},reused=${reused:-?}"
}

# verify WHAT SRC DST: the tree arrived whole (first run only; not timed).
VERIFY_FAILS=0
verify() {
	local what=$1 src=$2 dst=$3
	if ! diff -rq -x REVISION "$src" "$dst" >>"$LOGF" 2>&1; then
		log "VERIFY FAILED: $what ($dst differs from $src)"
		VERIFY_FAILS=$((VERIFY_FAILS + 1))
		sed -i "\$s/status=0/status=verify/" "$RESULTS"
	fi
}

sh_q() { printf '%q' "$1"; }

one_run() {
	local fs=$1 rtt=$2 run=$3
	local h=r$rtt
	D=$W/${fs:0:1}/$run-$rtt
	mkdir -p "$D"
	local Dq
	Dq=$(sh_q "$D")
	local check=0
	[[ $run == 1 ]] && check=1

	measure "$fs" "$rtt" ssh_true "$run" : -- ssh -F "$SSHCFG" "$h" true

	measure "$fs" "$rtt" tar_init "$run" : -- bash -c \
		"tar -C $(sh_q "$SRC/base") -cf - . | ssh -F $(sh_q "$SSHCFG") $h 'mkdir -p $Dq/tar && tar -C $Dq/tar -xf -'"
	((check)) && verify tar_init "$SRC/base" "$D/tar"

	# For context (atomic-deploy gzips its tar stream): the same with gzip -1.
	measure "$fs" "$rtt" tarz_init "$run" : -- bash -c \
		"tar -C $(sh_q "$SRC/base") -cf - . | gzip -1 | ssh -F $(sh_q "$SSHCFG") $h 'mkdir -p $Dq/tarz && tar -C $Dq/tarz -xzf -'"
	((check)) && verify tarz_init "$SRC/base" "$D/tarz"

	measure "$fs" "$rtt" rsync_init "$run" : -- \
		rsync -a -e "ssh -F $SSHCFG" "$SRC/base/" "$h:$D/rsync-base/"
	((check)) && verify rsync_init "$SRC/base" "$D/rsync-base"
	if [[ $rtt == cpu ]]; then
		# The unshaped link is only for the CPU guard: initial uploads.
		if [[ $AD_OK == 1 ]]; then
			ad_args "$rtt"
			measure "$fs" "$rtt" ad_init "$run" ad_extra -- "$W/bin/atomic-deploy" deploy "${AD_ARGS[@]}" --path "$D/ad" --source "$SRC/base"
			((check)) && verify ad_init "$SRC/base" "$D/ad/current/"
		fi
		rm -rf "$D"
		return
	fi

	measure "$fs" "$rtt" rsync_ld_kept "$run" : -- \
		rsync -a --link-dest="$D/rsync-base" -e "ssh -F $SSHCFG" "$SRC/kept/" "$h:$D/rsync-kept/"
	((check)) && verify rsync_ld_kept "$SRC/kept" "$D/rsync-kept"

	measure "$fs" "$rtt" rsync_ld_fresh "$run" : -- \
		rsync -a --link-dest="$D/rsync-base" -e "ssh -F $SSHCFG" "$SRC/fresh/" "$h:$D/rsync-fresh/"
	((check)) && verify rsync_ld_fresh "$SRC/fresh" "$D/rsync-fresh"

	measure "$fs" "$rtt" floor "$run" : -- bash -c \
		"tar -C $(sh_q "$SRC/kept") -cf - -T $(sh_q "$SRC/changed.list") | ssh -F $(sh_q "$SSHCFG") $h 'cp -al $Dq/rsync-base $Dq/floor && tar -C $Dq/floor -xf -'"
	((check)) && verify floor "$SRC/kept" "$D/floor"

	if [[ $AD_OK == 1 ]]; then
		ad_args "$rtt"
		local ad=("$W/bin/atomic-deploy" deploy "${AD_ARGS[@]}" --path "$D/ad")
		measure "$fs" "$rtt" ad_init "$run" ad_extra -- "${ad[@]}" --source "$SRC/base"
		((check)) && verify ad_init "$SRC/base" "$D/ad/current/"
		local base_link
		base_link=$(readlink "$D/ad/current")
		measure "$fs" "$rtt" ad_kept "$run" ad_extra -- "${ad[@]}" --source "$SRC/kept"
		((check)) && verify ad_kept "$SRC/kept" "$D/ad/current/"
		# Back to the base release, so the fresh build is compared with it: the
		# same as `atomic-deploy rollback` for what the next deploy reads (the
		# live release is what `current` points to), without its ~1 s of
		# round trips. The server's filesystem is this machine's.
		ln -sfn "$base_link" "$D/ad/.bench-current" && mv -T "$D/ad/.bench-current" "$D/ad/current"
		measure "$fs" "$rtt" ad_fresh "$run" ad_extra -- "${ad[@]}" --source "$SRC/fresh"
		((check)) && verify ad_fresh "$SRC/fresh" "$D/ad/current/"
		measure "$fs" "$rtt" ad_noop "$run" ad_extra -- "${ad[@]}" --source "$SRC/fresh"
		((check)) && verify ad_noop "$SRC/fresh" "$D/ad/current/"
	fi
	rm -rf "$D"
}

for fs in $FSS; do
	for run in $(seq 1 "$RUNS"); do
		for rtt in $RTTS; do
			one_run "$fs" "$rtt" "$run"
		done
	done
done

if [[ $RSS == 1 && $AD_OK == 1 ]]; then
	# shellcheck source=bench/rss_lib.sh
. "$BENCH_DIR/rss_lib.sh"
	: >"$OUT_DIR/rss.log"
	rss_measure "$(echo "$RTTS" | awk '{print $1}')" >"$OUT_DIR/rss.md"
	echo "rss_md=$OUT_DIR/rss.md" >>"$OUT_DIR/meta.env"
fi

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT_DIR/meta.env"
"$W/bin/benchtool" report -in "$RESULTS" -meta "$OUT_DIR/meta.env" | tee "$OUT_DIR/report.md"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$OUT_DIR/report.md" "$OUT_DIR/report-$stamp.md"
cp "$RESULTS" "$OUT_DIR/results-$stamp.tsv"
((VERIFY_FAILS == 0)) || log "$VERIFY_FAILS verification(s) failed: see $LOGF"
log "done in $((SECONDS - START)) s; results in $OUT_DIR"
