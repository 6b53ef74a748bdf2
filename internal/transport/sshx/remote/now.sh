# atomic-deploy:now — the server's clock, seconds since the epoch with nanoseconds.
exec date +%s.%N
