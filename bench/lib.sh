# shellcheck shell=bash disable=SC2034 # variables here are used by the scripts that source this
# Shared set-up for bench/run.sh and bench/rss.sh; source it, don't run it.
#
# bench_setup builds the tools and brings up, all of it torn down by
# bench_cleanup (installed as an EXIT trap):
#   - a work dir on the VM disk ($W), a tmpfs mounted at $W/t (sources, and
#     the tmpfs destination) and an ext4 of its own at $W/e (ext4_setup);
#   - two network namespaces joined by a veth pair with link-local addresses,
#     tbf 100mbit on both ends; sshd (throwaway keys, internal-sftp) in the
#     server namespace;
#   - one delay proxy per RTT in the client namespace on 127.0.0.1:(22000+RTT)
#     forwarding to sshd, with its byte counters on 127.0.0.1:(23000+RTT);
#   - RTT "cpu": a second, unshaped veth pair, reached straight (no proxy:
#     the client's own socket meets the link, and a rate set with
#     link_rate), for the CPU-bound comparison; its bytes are the veth's.
# Every command that talks to the server runs in the client namespace (inns).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}
TAG=adb$$                       # names of namespaces and links, unique per run
NSC=$TAG-c                      # client namespace
NSS=$TAG-s                      # server namespace
VETH_C=${TAG}c                  # veth end in the client namespace
VETH_S=${TAG}s                  # veth end in the server namespace
VETH_UC=${TAG}u                 # unshaped pair (RTT "cpu")
VETH_US=${TAG}v
ADDR_C=169.254.77.1             # link-local, only inside the namespaces
ADDR_S=169.254.77.2
ADDR_UC=169.254.78.1
ADDR_US=169.254.78.2
W=""                            # work dir, set by bench_setup
EXT4_DEST=""                    # what the ext4 destination is, set by ext4_setup
PIDS=()                         # processes we started (sshd, proxies)
CMD_TIMEOUT=${BENCH_CMD_TIMEOUT:-300}
PROXY_LIFETIME=${BENCH_LIFETIME:-3600s}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

inns() { ip netns exec "$NSC" "$@"; }

bench_require() {
	[[ $(id -u) == 0 ]] || die "needs root (network namespaces, tc, a tmpfs mount, sshd)"
	# The machine may be shared with tests running niced: run (and start sshd
	# and the proxies) at a higher priority so they disturb the timings less.
	renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null || true
	local missing=()
	command -v /usr/sbin/sshd >/dev/null || missing+=(openssh-server)
	command -v ssh >/dev/null || missing+=(openssh-client)
	command -v rsync >/dev/null || missing+=(rsync)
	command -v tc >/dev/null || missing+=(iproute2)
	[[ -x /usr/bin/time ]] || missing+=(time)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >/dev/null ||
			{ apt-get update >/dev/null && apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >/dev/null; } ||
			die "could not install ${missing[*]}"
	fi
	command -v go >/dev/null || die "go is not on PATH"
}

bench_cleanup() {
	local rc=$?
	set +e
	trap - ERR
	# What we started, and anything still running inside our namespaces.
	local ns
	for ns in "$NSC" "$NSS"; do
		if [[ -e /run/netns/$ns ]]; then
			local more=()
			mapfile -t more < <(ip netns pids "$ns" 2>/dev/null)
			PIDS+=("${more[@]}")
		fi
	done
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -9 "$pid" 2>/dev/null
	done
	ip netns del "$NSC" 2>/dev/null
	ip netns del "$NSS" 2>/dev/null
	if [[ -n $W ]]; then
		mountpoint -q "$W/t" && umount "$W/t"
		mountpoint -q "$W/e" && umount "$W/e"
		[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$W"
	fi
	return $rc
}

# settle_roots DIR...: waits until no lock holder works in a deploy root
# below DIR: once its deploy let go, one may still make the spare
# (holder.sh's after_deploy), and a tree being written is not removed whole.
settle_roots() {
	find "$@" -maxdepth 4 -path '*/.atomic-deploy/lock.flock' -exec flock -w 60 {} true \; 2>/dev/null || true
}

# bench_build puts atomic-deploy, delayproxy and benchtool into $W/bin.
# AD_OK=1 when atomic-deploy built.
bench_build() {
	mkdir -p "$W/bin"
	(cd "$REPO_DIR" && go build -o "$W/bin/delayproxy" ./bench/delayproxy && go build -o "$W/bin/benchtool" ./bench/benchtool) ||
		die "building the bench tools failed"
	AD_OK=0
	if (cd "$REPO_DIR" && go build -o "$W/bin/atomic-deploy" . 2>"$W/build.log"); then
		AD_OK=1
	else
		log "atomic-deploy does not build yet; its rows will be empty:"
		sed 's/^/    /' "$W/build.log" >&2
	fi
	AD_REV=$(cd "$REPO_DIR" && git describe --always --dirty 2>/dev/null || echo unknown)
}

# ext4_setup makes the ext4 destination at $W/e a file system of its own,
# made by mkfs.ext4 with its defaults (a journal, as on a server), in a
# sparse file on the VM disk; EXT4_DEST says what it is. The VM disk's own
# ext4 may have no journal, and without one ext4 skips inodes deleted in
# the last ~30 s when it allocates new ones (recently_deleted() in
# ialloc.c): after a prune has deleted thousands of files, creating 5,000
# took 1.2-1.6 s of system time instead of 0.1 s. Where no loop device can
# be had, the VM disk is used and the report says so.
ext4_setup() {
	truncate -s 16G "$W/ext4.img"
	if mkfs.ext4 -q -F "$W/ext4.img" && mount -o loop "$W/ext4.img" "$W/e"; then
		EXT4_DEST="a file system of its own (mkfs.ext4 defaults, with a journal) on a loop device"
	else
		rm -f "$W/ext4.img"
		EXT4_DEST="the VM disk's $(findmnt -n -o FSTYPE,OPTIONS -T "$W/e" 2>/dev/null || echo ext4) (no loop device)"
		log "no loop device for the ext4 destination; using the VM disk: $EXT4_DEST"
	fi
}

# bench_setup RTT... (round trips in ms; each gets a proxy with RTT/2 delay)
bench_setup() {
	# One benchmark at a time: two at once would time each other, and share
	# bench/out.
	mkdir -p "$OUT_DIR"
	exec 8>"$OUT_DIR/.lock"
	if ! flock -n 8; then
		log "another benchmark holds $OUT_DIR/.lock; waiting (at most ${BENCH_LOCK_WAIT:-1800} s)"
		flock -w "${BENCH_LOCK_WAIT:-1800}" 8 || die "another benchmark is still running"
	fi
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	# Short paths: they are repeated in every SFTP request.
	W=$(mktemp -d /var/tmp/adb.XXXXXX)
	mkdir -p "$W/t" "$W/e" "$W/keys" "$OUT_DIR"
	mount -t tmpfs -o size=6g,mode=0755 "bench-$TAG" "$W/t"
	ext4_setup
	bench_build

	log "network: namespaces $NSC/$NSS, veth + tbf 100mbit"
	ip netns add "$NSC"
	ip netns add "$NSS"
	ip link add "$VETH_C" type veth peer name "$VETH_S"
	ip link set "$VETH_C" netns "$NSC"
	ip link set "$VETH_S" netns "$NSS"
	ip -n "$NSC" addr add "$ADDR_C/30" dev "$VETH_C"
	ip -n "$NSS" addr add "$ADDR_S/30" dev "$VETH_S"
	for ns in "$NSC" "$NSS"; do ip -n "$ns" link set lo up; done
	ip -n "$NSC" link set "$VETH_C" up
	ip -n "$NSS" link set "$VETH_S" up
	ip netns exec "$NSC" tc qdisc add dev "$VETH_C" root tbf rate 100mbit burst 64kb latency 50ms
	ip netns exec "$NSS" tc qdisc add dev "$VETH_S" root tbf rate 100mbit burst 64kb latency 50ms
	ip link add "$VETH_UC" type veth peer name "$VETH_US"
	ip link set "$VETH_UC" netns "$NSC"
	ip link set "$VETH_US" netns "$NSS"
	ip -n "$NSC" addr add "$ADDR_UC/30" dev "$VETH_UC"
	ip -n "$NSS" addr add "$ADDR_US/30" dev "$VETH_US"
	ip -n "$NSC" link set "$VETH_UC" up
	ip -n "$NSS" link set "$VETH_US" up

	local k=$W/keys
	ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$k/host_ed25519_key"
	ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$k/id_ed25519"
	install -m 0600 "$k/id_ed25519.pub" "$k/authorized_keys.root"
	mkdir -p /run/sshd
	cat >"$k/sshd_config" <<EOF
Port 22
ListenAddress $ADDR_S
ListenAddress $ADDR_US
HostKey $k/host_ed25519_key
PidFile $k/sshd.pid
AuthorizedKeysFile $k/authorized_keys.%u
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 32
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
	# Every SSH command starts the login shell, and bash reads ~/.bashrc
	# when sshd starts it. A server's deploy user has stock dotfiles; a dev
	# machine's root may not (this one's runs `pyenv init`, ~100 ms of CPU
	# per command, charged to every method but more often to those that run
	# more commands). So sshd sees a home with /etc/skel's files, bind-mounted
	# over root's in a mount namespace of its own; BENCH_CLEAN_HOME=0 keeps
	# the machine's.
	if [[ ${BENCH_CLEAN_HOME:-1} == 1 ]]; then
		mkdir -p "$W/home"
		cp -a /etc/skel/. "$W/home/" 2>/dev/null || true
		unshare -m --propagation slave sh -c 'mount --bind "$1" "$2" && exec ip netns exec "$3" /usr/sbin/sshd -D -e -f "$4"' \
			sh "$W/home" "$(getent passwd root | cut -d: -f6)" "$NSS" "$k/sshd_config" 2>>"$W/sshd.log" &
	else
		ip netns exec "$NSS" /usr/sbin/sshd -D -e -f "$k/sshd_config" 2>>"$W/sshd.log" &
	fi
	PIDS+=($!)

	local hostkey rtt
	hostkey=$(cut -d' ' -f1,2 "$k/host_ed25519_key.pub")
	: >"$k/known_hosts"
	: >"$k/ssh_config"
	for rtt in "$@"; do
		if [[ $rtt == cpu ]]; then
			# The unshaped link has no proxy: the client's own socket is the
			# link's (a rate set on it with tc is what the socket meets), as
			# a runner's is.
			echo "$ADDR_US $hostkey" >>"$k/known_hosts"
			printf 'Host rcpu\n  HostName %s\n  Port 22\n' "$ADDR_US" >>"$k/ssh_config"
			continue
		fi
		ip netns exec "$NSC" "$W/bin/delayproxy" -listen "127.0.0.1:$(proxy_port "$rtt")" -target "$ADDR_S:22" \
			-delay "$((rtt * 500))us" -stats "127.0.0.1:$(($(proxy_port "$rtt") + 1000))" -lifetime "$PROXY_LIFETIME" 2>>"$W/proxy.log" &
		PIDS+=($!)
		echo "[127.0.0.1]:$(proxy_port "$rtt") $hostkey" >>"$k/known_hosts"
		cat >>"$k/ssh_config" <<EOF
Host r$rtt
  HostName 127.0.0.1
  Port $(proxy_port "$rtt")
EOF
	done
	cat >>"$k/ssh_config" <<EOF
Host *
  User root
  IdentityFile $k/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $k/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ControlMaster no
  ControlPath none
  LogLevel ERROR
EOF
	SSHCFG=$k/ssh_config
	KEYTEXT=$(cat "$k/id_ed25519")
	KHTEXT=$(cat "$k/known_hosts")

	# Wait (bounded) until every proxy reaches sshd.
	for rtt in "$@"; do
		local ok=0
		for _ in $(seq 1 50); do
			if inns timeout 10 ssh -F "$SSHCFG" "r$rtt" true 2>/dev/null; then ok=1; break; fi
			sleep 0.2
		done
		((ok)) || { cat "$W/sshd.log" "$W/proxy.log" >&2; die "sshd not reachable through the proxy for RTT $rtt"; }
	done
	log "sshd up in $NSS, proxies for RTT $* ms ready"
}

# link_rate RATE: holds the unshaped link (RTT "cpu") to RATE both ways
# (tbf; "1gbit", "100mbit", "10mbit"...), or lifts the limit ("").
link_rate() {
	local rate=$1
	if [[ -z $rate ]]; then
		ip netns exec "$NSC" tc qdisc del dev "$VETH_UC" root 2>/dev/null || true
		ip netns exec "$NSS" tc qdisc del dev "$VETH_US" root 2>/dev/null || true
		return
	fi
	[[ $rate =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || die "link rate $rate is not NUMBER(kbit|mbit|gbit)"
	local bits=${BASH_REMATCH[1]}
	case ${BASH_REMATCH[2]} in
	kbit) bits=$((bits * 1000)) ;;
	mbit) bits=$((bits * 1000000)) ;;
	gbit) bits=$((bits * 1000000000)) ;;
	esac
	# A bucket of 4 ms at the rate (at least 64 KiB): enough for the
	# timer's granularity, so the rate is the limit and not the bucket.
	local burst=$((bits / 8 / 250))
	((burst >= 65536)) || burst=65536
	ip netns exec "$NSC" tc qdisc replace dev "$VETH_UC" root tbf rate "$rate" burst "$burst" latency 50ms
	ip netns exec "$NSS" tc qdisc replace dev "$VETH_US" root tbf rate "$rate" burst "$burst" latency 50ms
}

# proxy_port RTT: where the proxy for that RTT listens.
proxy_port() { echo $((22000 + $1)); }

# proxy_bytes RTT prints "UP DOWN" of that proxy's counters; for the
# unshaped link ("cpu", no proxy), of its interface in the client's
# namespace (headers included, ~4 % more than the payload).
proxy_bytes() {
	if [[ $1 == cpu ]]; then
		inns cat "/sys/class/net/$VETH_UC/statistics/tx_bytes" "/sys/class/net/$VETH_UC/statistics/rx_bytes" | paste -sd' '
		return
	fi
	inns "$W/bin/delayproxy" -query "127.0.0.1:$(($(proxy_port "$1") + 1000))" |
		sed -n 's/^up=\([0-9]*\) down=\([0-9]*\).*/\1 \2/p'
}

# ad_args RTT sets AD_ARGS: how atomic-deploy reaches sshd for RTT.
ad_args() {
	local host=root@$ADDR_US:22
	[[ $1 == cpu ]] || host=root@127.0.0.1:$(proxy_port "$1")
	AD_ARGS=(--host "$host" --private-key "$KEYTEXT" --known-hosts "$KHTEXT")
}

# cpu_busy prints "BUSY NICED": percentages of CPU time (all cores) over
# 0.3 s spent at normal priority and at lowered priority (niced work, which
# our raised priority mostly pre-empts).
cpu_busy() {
	local a b
	a=$(head -1 /proc/stat)
	sleep 0.3
	b=$(head -1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 2; i <= n; i++) { t += y[i] - x[i] }
		idle = (y[5] - x[5]) + (y[6] - x[6]); nice = y[3] - x[3]
		if (t <= 0) t = 1
		printf "%d %d\n", 100 * (t - idle - nice) / t, 100 * nice / t }'
}

# wait_quiet: the machine may be shared; wait (at most BENCH_QUIET_WAIT s per
# call, BENCH_QUIET_BUDGET s in all) until other work leaves the CPUs mostly
# idle at normal priority. Sets BUSY and NICED to the last reading.
QUIET_SPENT=0
wait_quiet() {
	local limit=${BENCH_QUIET_WAIT:-4} budget=${BENCH_QUIET_BUDGET:-60} start=$SECONDS
	read -r BUSY NICED < <(cpu_busy)
	while ((BUSY > ${BENCH_QUIET_PCT:-25} && SECONDS - start < limit && QUIET_SPENT + SECONDS - start < budget)); do
		sleep 0.5
		read -r BUSY NICED < <(cpu_busy)
	done
	QUIET_SPENT=$((QUIET_SPENT + SECONDS - start))
}
