# shellcheck shell=bash
# rss_measure RTT: peak RSS of atomic-deploy for a 100,000-file release of
# tiny files, first deploy and a second (no-op) one, which also reads the
# previous manifest and scans the previous release. Prints Markdown.
# Needs bench_setup (lib.sh) done with RTT among its round trips.
RSS_FILES=${BENCH_RSS_FILES:-100000}
RSS_LIMIT_KB=97656 # 100 MB

rss_measure() {
	local rtt=$1 src=$W/t/src-rss dst=$W/t/dst-rss
	rm -rf "$src" "$dst"
	log "rss: generating $RSS_FILES tiny files"
	"$W/bin/benchtool" gen -out "$src" -files "$RSS_FILES" -min 16 -max 512 -seed 3 >"$W/gen-rss.out"
	local files bytes dirs
	read -r files dirs bytes < <(sed -n 's/^files=\([0-9]*\) dirs=\([0-9]*\) bytes=\([0-9]*\)/\1 \2 \3/p' "$W/gen-rss.out")
	ad_args "$rtt"
	echo "#### Peak RSS of atomic-deploy, $files tiny files ($dirs directories, $((bytes / 1000)) kB), tmpfs, link: $rtt"
	echo
	echo "| deploy | wall | client CPU (user+sys) | peak RSS | target | result |"
	echo "|---|---:|---:|---:|---|---|"
	local step
	for step in initial no-op; do
		local tf=$W/rss-$step.time status=0
		inns timeout -k 5 "$CMD_TIMEOUT" /usr/bin/time -v -o "$tf" \
			"$W/bin/atomic-deploy" deploy "${AD_ARGS[@]}" --path "$dst" --source "$src" >>"$OUT_DIR/rss.log" 2>&1 || status=$?
		local kb wall user sys
		kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tf")
		wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tf")
		user=$(sed -n 's/.*User time (seconds): //p' "$tf")
		sys=$(sed -n 's/.*System time (seconds): //p' "$tf")
		local res=PASS
		if [[ $status != 0 ]]; then
			res="**FAIL** (exit $status, see rss.log)"
		elif ((kb >= RSS_LIMIT_KB)); then
			res="**FAIL**"
		fi
		log "rss: $step deploy: ${kb} kB peak, $wall"
		printf '| %s | %s | %.2f s | %.1f MB | < 100 MB | %s |\n' "$step" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')" "$(awk -v k="$kb" 'BEGIN{print k*1024/1e6}')" "$res"
	done
	settle_roots "$dst"
	rm -rf "$src" "$dst"
}
