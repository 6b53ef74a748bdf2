# shellcheck shell=bash
# Servers for bench/zero-downtime.sh; source it, don't run it.
#
# Everything listens on 127.0.0.1 only, runs in the foreground from configs
# written under $ZDT_DIR, and is stopped by zdt_stop_all:
#   zdt_user NAME           a login user for the deploys (created if missing)
#   zdt_sshd USER           OpenSSH with throwaway keys; sets SSHD_PORT,
#                           CLIENT_KEY (file), KNOWN_HOSTS (file)
#   zdt_web ROOT USER       php-fpm (static pool of 4, as USER) and nginx
#                           serving ROOT/current/public with $realpath_root;
#                           sets HTTP_PORT
# The recipes are the ones in the test harnesses (internal/testutil/sshtest,
# internal/testutil/webtest).

ZDT_PIDS=()

zdt_log() { printf '[zdt %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
zdt_die() { zdt_log "error: $*"; exit 1; }

# zdt_free_port prints a TCP port nothing listens on right now.
zdt_free_port() {
	local port
	for _ in $(seq 50); do
		port=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	zdt_die "no free port found"
}

# zdt_wait_port PORT PID: until PORT accepts connections (or PID exits).
zdt_wait_port() {
	local port=$1 pid=$2
	for _ in $(seq 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

zdt_user() {
	local name=$1
	if ! id "$name" >/dev/null 2>&1; then
		useradd -m -s /bin/bash "$name" || zdt_die "useradd $name"
	fi
	# A new account is locked ("!"); sshd refuses locked accounts even for keys.
	usermod -p '*' "$name" || zdt_die "usermod $name"
}

zdt_sshd() {
	local user=$1 d=$ZDT_DIR/sshd
	mkdir -p "$d" /run/sshd
	chmod 755 "$d"
	ssh-keygen -q -t ed25519 -N '' -C zdt-host -f "$d/host_key" || zdt_die "ssh-keygen"
	ssh-keygen -q -t ed25519 -N '' -C zdt-client -f "$d/client_key" || zdt_die "ssh-keygen"
	install -m 600 -o "$user" -g "$(id -gn "$user")" "$d/client_key.pub" "$d/authorized_keys.$user"
	# shellcheck disable=SC2034 # used by the caller
	CLIENT_KEY=$d/client_key
	local attempt pid
	for attempt in 1 2 3 4 5; do
		SSHD_PORT=$(zdt_free_port)
		cat >"$d/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys.%u
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
LogLevel ERROR
CFG
		/usr/sbin/sshd -D -e -f "$d/sshd_config" 2>>"$d/sshd.log" &
		pid=$!
		if zdt_wait_port "$SSHD_PORT" "$pid"; then
			ZDT_PIDS+=("$pid")
			break
		fi
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		((attempt == 5)) && zdt_die "sshd did not start: $(tail -5 "$d/sshd.log")"
	done
	KNOWN_HOSTS=$d/known_hosts
	echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$d/host_key.pub")" >"$KNOWN_HOSTS"
}

zdt_web() {
	local root=$1 user=$2 d=$ZDT_DIR/web group
	group=$(id -gn "$user")
	mkdir -p "$d"
	chmod 755 "$d"
	cat >"$d/php-fpm.conf" <<CFG
[global]
pid = $d/php-fpm.pid
error_log = $d/php-fpm.log
daemonize = no

[app]
user = $user
group = $group
listen = $d/php-fpm.sock
listen.owner = $user
listen.group = $group
listen.mode = 0660
pm = static
pm.max_children = ${ZDT_FPM_WORKERS:-4}
clear_env = no
php_admin_value[error_log] = $d/php-errors.log
php_admin_flag[log_errors] = on
CFG
	php-fpm8.2 -F -y "$d/php-fpm.conf" >>"$d/php-fpm.out" 2>&1 &
	ZDT_PIDS+=("$!")
	for _ in $(seq 300); do [[ -S $d/php-fpm.sock ]] && break; sleep 0.05; done
	[[ -S $d/php-fpm.sock ]] || zdt_die "php-fpm did not start: $(tail -5 "$d/php-fpm.log" "$d/php-fpm.out" 2>/dev/null)"

	local attempt pid
	for attempt in 1 2 3 4 5; do
		HTTP_PORT=$(zdt_free_port)
		cat >"$d/nginx.conf" <<CFG
user $user $group;
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$HTTP_PORT;
        root $root/current/public;
        index index.php;
        location / { try_files \$uri \$uri/ /index.php?\$query_string; }
        location ~ \.php\$ {
            try_files \$fastcgi_script_name =404;
            fastcgi_pass unix:$d/php-fpm.sock;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param CONTENT_TYPE \$content_type;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_param SCRIPT_NAME \$fastcgi_script_name;
            fastcgi_param REQUEST_URI \$request_uri;
            fastcgi_param DOCUMENT_URI \$document_uri;
            fastcgi_param SERVER_PROTOCOL \$server_protocol;
            fastcgi_param REQUEST_SCHEME \$scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR \$remote_addr;
            fastcgi_param REMOTE_PORT \$remote_port;
            fastcgi_param SERVER_ADDR \$server_addr;
            fastcgi_param SERVER_PORT \$server_port;
            fastcgi_param SERVER_NAME \$server_name;
            fastcgi_param HTTP_HOST \$host;
            fastcgi_param REDIRECT_STATUS 200;
            # One release per request: PHP gets the resolved path.
            fastcgi_param SCRIPT_FILENAME \$realpath_root\$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT \$realpath_root;
        }
    }
}
CFG
		nginx -e "$d/error.log" -p "$d/" -c "$d/nginx.conf" 2>>"$d/nginx.out" &
		pid=$!
		if zdt_wait_port "$HTTP_PORT" "$pid"; then
			ZDT_PIDS+=("$pid")
			return 0
		fi
		kill -QUIT "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	zdt_die "nginx did not start: $(tail -5 "$d/error.log" "$d/nginx.out" 2>/dev/null)"
}

# zdt_stop_all stops what we started, newest first: SIGQUIT (graceful for
# nginx and php-fpm, and ends sshd), then SIGKILL after 10 s.
zdt_stop_all() {
	local i pid
	for ((i = ${#ZDT_PIDS[@]} - 1; i >= 0; i--)); do
		pid=${ZDT_PIDS[i]}
		kill -QUIT "$pid" 2>/dev/null || continue
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	ZDT_PIDS=()
}
