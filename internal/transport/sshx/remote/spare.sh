# atomic-deploy:spare END — a shell started ahead of need (Transport.Warm).
# It says ready, reads one command up to a line holding only END, and runs
# it in its place; the command reads the rest of standard input. read takes
# a pipe byte by byte, so nothing past END is consumed. Input that ends
# before END is a command that did not arrive whole: a failure, never
# taken for the command's success.
echo ready
cmd=
while IFS= read -r line; do
	if [ "$line" = "$1" ]; then
		eval "$cmd"
		exit
	fi
	cmd="$cmd$line
"
done
echo "atomic-deploy: the session ended before its command arrived whole" >&2
exit 1
