#!/usr/bin/env bash
# bench/run.sh — atomic-deploy (with and without a hook) against tar|ssh,
# rsync (--link-dest and --copy-dest) and the cp -al floor on one emulated
# link (100 Mbit tbf, ~0/20/50 ms RTT via a delay proxy), to tmpfs and ext4
# destinations, plus initial uploads over an unshaped link (CPU guard) and
# that link held to 1 Gbit, 100 Mbit and 10 Mbit. Prints Markdown tables of
# medians and PASS/FAIL per target; writes everything to bench/out/. Needs
# root (netns, tc, mount).
#
#   bench/run.sh                  full run (3 runs each, cpu/~0/20/50 ms, the rates, tmpfs + ext4)
#   BENCH_QUICK=1 bench/run.sh    1 run, cpu/~20 ms, no rates
# Environment: BENCH_RUNS (default 3), BENCH_RTTS ("cpu 0 20 50"; "cpu" is the
# unshaped link without delay, initial uploads only), BENCH_RATES ("1gbit
# 100mbit 10mbit": initial uploads on the unshaped link held to each; needs
# cpu in BENCH_RTTS; "" for none), BENCH_FS ("tmpfs ext4"), BENCH_RSS=1 adds the 100,000-file peak-RSS check (bench/rss.sh, ~1 min),
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
	RATES=${BENCH_RATES-}
	RSS=${BENCH_RSS:-0}
else
	RUNS=${BENCH_RUNS:-3}
	RTTS=${BENCH_RTTS:-"cpu 0 20 50"}
	RATES=${BENCH_RATES-"1gbit 100mbit 10mbit"}
	RSS=${BENCH_RSS:-0}
fi
FSS=${BENCH_FS:-"tmpfs ext4"}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || die "BENCH_RUNS must be 1-99"
for r in $RTTS; do [[ $r =~ ^([0-9]{1,3}|cpu)$ ]] || die "BENCH_RTTS: $r is not a number of ms or cpu"; done
for r in $RATES; do [[ $r =~ ^[0-9]+(kbit|mbit|gbit)$ ]] || die "BENCH_RATES: $r is not NUMBER(kbit|mbit|gbit)"; done
[[ -z $RATES || " $RTTS " == *" cpu "* ]] || die "BENCH_RATES needs cpu in BENCH_RTTS (the rates hold the unshaped link)"
for f in $FSS; do [[ $f == tmpfs || $f == ext4 ]] || die "BENCH_FS: $f is not tmpfs or ext4"; done

START=$SECONDS
bench_require
# shellcheck disable=SC2086
bench_setup $RTTS
RESULTS=$OUT_DIR/results.tsv
LOGF=$OUT_DIR/commands.log
: >"$RESULTS"
: >"$LOGF"

# The Laravel preset's shape without PHP (its hooks are `true`).
LARAVEL_SHAPE=(--shared-dirs storage --shared-files .env --writable-dirs $'bootstrap/cache\nstorage'
	--before-activate true --before-activate-once true --after-activate true)
VERIFY_EXCLUDE=()

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
ext4=$EXT4_DEST
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

# After an atomic-deploy run into $AD_ROOT: manifest size of the live
# release and what it says it uploaded/reused (the terminal log ends with
# the outputs).
ad_extra() {
	local cur
	cur=$(readlink "$AD_ROOT/current" 2>/dev/null || true)
	if [[ -n $cur ]]; then
		EXTRA+=",manifest=$(stat -c %s "$AD_ROOT/.atomic-deploy/manifests/${cur#releases/}.json.gz" 2>/dev/null || echo 0)"
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
	if ! diff -rq -x REVISION "${VERIFY_EXCLUDE[@]}" "$src" "$dst" >>"$LOGF" 2>&1; then
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

	measure "$fs" "$rtt" rsync_init "$run" : -- \
		rsync -a -e "ssh -F $SSHCFG" "$SRC/base/" "$h:$D/rsync-base/"
	((check == 0)) || verify rsync_init "$SRC/base" "$D/rsync-base"
	if [[ $rtt == cpu ]]; then
		# The unshaped link is for initial uploads only: the CPU guard, and
		# the same uploads with the link held to each of $RATES.
		local rate
		for rate in "" $RATES; do
			link_rate "$rate"
			initial_uploads "$fs" "$rtt" "$run" "$rate"
		done
		link_rate ""
		settle_roots "$D"
		rm -rf "$D"
		return
	fi

	initial_uploads "$fs" "$rtt" "$run" ""

	measure "$fs" "$rtt" rsync_ld_kept "$run" : -- \
		rsync -a --link-dest="$D/rsync-base" -e "ssh -F $SSHCFG" "$SRC/kept/" "$h:$D/rsync-kept/"
	((check == 0)) || verify rsync_ld_kept "$SRC/kept" "$D/rsync-kept"

	measure "$fs" "$rtt" rsync_ld_fresh "$run" : -- \
		rsync -a --link-dest="$D/rsync-base" -e "ssh -F $SSHCFG" "$SRC/fresh/" "$h:$D/rsync-fresh/"
	((check == 0)) || verify rsync_ld_fresh "$SRC/fresh" "$D/rsync-fresh"

	# rsync's private copies (what atomic-deploy makes by default: no two
	# releases share a file), for comparison with --link-dest's hard links.
	measure "$fs" "$rtt" rsync_cd_kept "$run" : -- \
		rsync -a --copy-dest="$D/rsync-base" -e "ssh -F $SSHCFG" "$SRC/kept/" "$h:$D/rsync-cd-kept/"
	((check == 0)) || verify rsync_cd_kept "$SRC/kept" "$D/rsync-cd-kept"

	measure "$fs" "$rtt" rsync_cd_fresh "$run" : -- \
		rsync -a --copy-dest="$D/rsync-base" -e "ssh -F $SSHCFG" "$SRC/fresh/" "$h:$D/rsync-cd-fresh/"
	((check == 0)) || verify rsync_cd_fresh "$SRC/fresh" "$D/rsync-cd-fresh"

	measure "$fs" "$rtt" floor "$run" : -- bash -c \
		"tar -C $(sh_q "$SRC/kept") -cf - -T $(sh_q "$SRC/changed.list") | ssh -F $(sh_q "$SSHCFG") $h 'cp -al $Dq/rsync-base $Dq/floor && tar -C $Dq/floor -xf -'"
	((check == 0)) || verify floor "$SRC/kept" "$D/floor"

	if [[ $AD_OK == 1 ]]; then
		# ad_init ran in initial_uploads: the incremental deploys follow it.
		ad_args "$rtt"
		local ad=("$W/bin/atomic-deploy" deploy "${AD_ARGS[@]}")
		incremental "$fs" "$rtt" "$run" "" "$D/ad" "${ad[@]}"
		AD_ROOT=$D/ad
		measure "$fs" "$rtt" ad_noop "$run" ad_extra -- "${ad[@]}" --path "$D/ad" --source "$SRC/fresh"
		((check == 0)) || verify ad_noop "$SRC/fresh" "$D/ad/current/"
		# The path users run: a deploy with a hook (the Laravel preset always
		# has them). `true` costs nothing itself; what is left is the hook's
		# price in round trips and sessions.
		incremental "$fs" "$rtt" "$run" _hooks "$D/adh" "${ad[@]}" --before-activate true
		# And the shape of the Laravel preset, with `true` for its three
		# hooks: shared storage/ and .env, writable-dirs, before-activate,
		# before-activate-once, after-activate.
		VERIFY_EXCLUDE=(-x storage -x .env -x bootstrap)
		incremental "$fs" "$rtt" "$run" _laravel "$D/adl" "${ad[@]}" "${LARAVEL_SHAPE[@]}"
		VERIFY_EXCLUDE=()
	fi
	settle_roots "$D"
	rm -rf "$D"
}

# initial_uploads FS RTT RUN RATE: a whole tree into an empty directory, by
# tar|ssh, tar -cz|ssh and atomic-deploy (with and without a hook: into
# $D/ad and $D/adh, where the incremental deploys start from them). RATE
# ("" or a tc rate) names the rows and keeps them apart: link_rate sets it.
initial_uploads() {
	local fs=$1 rtt=$2 run=$3 rate=$4 h=r$2
	local at=${rate:+@$rate} dir=$D${rate:+/$rate}
	local Dq
	Dq=$(sh_q "$dir")
	local check=0
	[[ $run == 1 ]] && check=1
	mkdir -p "$dir"
	measure "$fs" "$rtt" "tar_init$at" "$run" : -- bash -c \
		"tar -C $(sh_q "$SRC/base") -cf - . | ssh -F $(sh_q "$SSHCFG") $h 'mkdir -p $Dq/tar && tar -C $Dq/tar -xf -'"
	((check == 0)) || verify "tar_init$at" "$SRC/base" "$dir/tar"

	measure "$fs" "$rtt" "tarz_init$at" "$run" : -- bash -c \
		"tar -C $(sh_q "$SRC/base") -cf - . | gzip -1 | ssh -F $(sh_q "$SSHCFG") $h 'mkdir -p $Dq/tarz && tar -C $Dq/tarz -xzf -'"
	((check == 0)) || verify "tarz_init$at" "$SRC/base" "$dir/tarz"
	if [[ $AD_OK == 1 ]]; then
		ad_args "$rtt"
		local ad=("$W/bin/atomic-deploy" deploy "${AD_ARGS[@]}" --source "$SRC/base")
		AD_ROOT=$dir/ad
		measure "$fs" "$rtt" "ad_init$at" "$run" ad_extra -- "${ad[@]}" --path "$AD_ROOT"
		((check == 0)) || verify "ad_init$at" "$SRC/base" "$AD_ROOT/current/"
		AD_ROOT=$dir/adh
		measure "$fs" "$rtt" "ad_init_hooks$at" "$run" ad_extra -- "${ad[@]}" --path "$AD_ROOT" --before-activate true
		((check == 0)) || verify "ad_init_hooks$at" "$SRC/base" "$AD_ROOT/current/"
		if [[ -z $rate ]]; then
			# The production .env is put there by hand, before a first deploy.
			AD_ROOT=$dir/adl
			mkdir -p "$AD_ROOT/shared"
			echo APP_KEY=bench >"$AD_ROOT/shared/.env"
			measure "$fs" "$rtt" "ad_init_laravel" "$run" ad_extra -- "${ad[@]}" --path "$AD_ROOT" "${LARAVEL_SHAPE[@]}"
		fi
	fi
	rm -rf "$dir/tar" "$dir/tarz"
}

# incremental FS RTT RUN SUFFIX ROOT DEPLOY...: the 50 changed files onto
# the initial release at ROOT, mtimes kept, then the fresh build (every
# mtime new) onto the same initial release.
incremental() {
	local fs=$1 rtt=$2 run=$3 suffix=$4 root=$5
	shift 5
	AD_ROOT=$root
	set -- "$@" --path "$root"
	local check=0
	[[ $run == 1 ]] && check=1
	local base_link
	base_link=$(readlink "$root/current")
	measure "$fs" "$rtt" "ad_kept$suffix" "$run" ad_extra -- "$@" --source "$SRC/kept"
	((check == 0)) || verify "ad_kept$suffix" "$SRC/kept" "$root/current/"
	# Back to the base release, so the fresh build is compared with it: a
	# rollback as a user would run it (its lock holder then makes the spare
	# of the base release, as after any switch), timed once a run.
	if [[ -z $suffix ]]; then
		measure "$fs" "$rtt" "ad_rollback" "$run" true -- "$W/bin/atomic-deploy" rollback "${AD_ARGS[@]}" --path "$root" --release-id "${base_link#releases/}"
		[[ $(readlink "$root/current") == "$base_link" ]] || die "rollback to $base_link failed (see $LOGF)"
	else
		inns "$W/bin/atomic-deploy" rollback "${AD_ARGS[@]}" --path "$root" --release-id "${base_link#releases/}" >>"$LOGF" 2>&1 ||
			die "rollback to $base_link failed (see $LOGF)"
	fi
	measure "$fs" "$rtt" "ad_fresh$suffix" "$run" ad_extra -- "$@" --source "$SRC/fresh"
	((check == 0)) || verify "ad_fresh$suffix" "$SRC/fresh" "$root/current/"
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
