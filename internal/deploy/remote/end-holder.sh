# atomic-deploy:end-holder PID — ends a lock holder whose deploy is gone
# (its heartbeat stopped; no FIN reached sshd), so the kernel frees the lock.
exec kill -9 "$1"
