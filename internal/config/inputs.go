package config

// Input is one option: an action.yml input and, with the same name, a CLI flag.
// This table is the single source of truth; a test keeps action.yml and the
// README in step with it.
type Input struct {
	Name        string
	Default     string
	Description string
	Secret      bool
}

// Inputs lists every option in the order action.yml declares them.
var Inputs = []Input{
	{Name: "mode", Default: "deploy", Description: "deploy (upload a new release and switch to it), prepare (upload it and run before-activate on every host, then switch nothing: the release waits for activate), activate (switch every host to release-id, a release prepare left there, with after-activate, the health check and rollout; nothing is built or uploaded, so source, build and exclude are not read), rollback or unlock."},
	{Name: "host", Description: "One or more [user@]host[:port], newline- or comma-separated. Empty deploys on this machine's filesystem."},
	{Name: "port", Default: "22", Description: "SSH port for hosts that do not name one."},
	{Name: "username", Description: "SSH user for hosts that do not name one."},
	{Name: "private-key", Description: "SSH private key (PEM / OpenSSH format). Several keys, one after the other, are all offered to every host (a fleet whose hosts take different keys).", Secret: true},
	{Name: "passphrase", Description: "Passphrase of the private key.", Secret: true},
	{Name: "password", Description: "SSH password, when no key is used.", Secret: true},
	{Name: "known-hosts", Description: "known_hosts lines that pin the servers' host keys (ssh-keyscan output)."},
	{Name: "fingerprint", Description: "Host key fingerprints instead of known-hosts, one line per server: host=SHA256:... or [host]:port SHA256:... (each host and the jump-host is checked against its own only). A bare SHA256:... is accepted only with a single host and no jump-host."},
	{Name: "insecure-ignore-host-key", Default: "false", Description: "Skip host key verification. Dangerous: anyone on the network path can impersonate the server."},
	{Name: "jump-host", Description: "[user@]host[:port] of a bastion to connect through (same credentials and known-hosts; its own fingerprint line)."},
	{Name: "connect-timeout", Default: "20s", Description: "How long one attempt to connect (TCP, SSH handshake, authentication) may take."},
	{Name: "connect-retries", Default: "3", Description: "How many more times a connection that was refused, timed out or was reset is tried, after waits of about 1 s, 2 s, 4 s... (with jitter). A host key mismatch, an unknown host or refused credentials are never retried."},
	{Name: "path", Description: "Deploy root on the server (absolute). Required."},
	{Name: "source", Default: ".", Description: "Directory to release, relative to the workspace."},
	{Name: "exclude", Default: ".github", Description: "Paths left out of the release, one pattern a line, in .gitignore syntax (`!` re-includes, `dir/`, `/anchored`, `**`; the last matching line wins). `.git` is always left out (`!.git` ships it); `.deployignore` in source is read first, these lines after it."},
	{Name: "build", Description: "Shell command run in source on the runner before upload."},
	{Name: "preset", Description: "Defaults for a framework: laravel."},
	{Name: "maintenance-mode", Default: "false", Description: "With preset: laravel, php artisan down once the new release is ready on every host (before the migrations), php artisan up right after the switch, and up again in the live release if the deploy fails."},
	{Name: "shared-dirs", Description: "Directories kept across releases in <path>/shared (newline-separated, relative)."},
	{Name: "shared-files", Description: "Files kept across releases in <path>/shared (newline-separated, relative)."},
	{Name: "writable-dirs", Description: "Directories made writable in each release, recursively (see writable-mode)."},
	{Name: "writable-mode", Description: "How writable-dirs are made writable: chmod (owner and group get read/write; the default), acl (writable-user and the deploy user get read/write through ACLs that what either creates later inherits; needs setfacl on the server) or chgrp (the group becomes writable-user, with read/write; the deploy user must be in that group). acl and chgrp need a shell on the server."},
	{Name: "writable-user", Description: "The web server's user for writable-mode acl (e.g. www-data), its group for chgrp."},
	{Name: "before-activate", Description: "Shell script run on each server in the new release before it goes live."},
	{Name: "before-activate-once", Description: "Shell script run on the first server only, after every server is ready and before any switches (database migrations in a fleet)."},
	{Name: "after-activate", Description: "Shell script run on each server after the switch."},
	{Name: "on-failure", Description: "Shell script run on each server in the live release when a deploy fails (before the lock is released), with the error in $DEPLOY_ERROR: undo what before-activate did to shared state, or notify."},
	{Name: "command-timeout", Description: "How long each hook (before-activate, before-activate-once, after-activate) may run, e.g. 10m. A hook that runs longer is ended with everything it started and the deploy fails (and rolls back after the switch, with auto-rollback). Empty or 0: no limit."},
	{Name: "env", Description: "Environment variables for every hook (before-activate, before-activate-once, after-activate), one a line: NAME=value; NAME alone for the step's own variable of that name; NAME<<EOF, then lines, then EOF for a value of several lines (the form of $GITHUB_ENV). Shown like any input: put secrets in secret-env."},
	{Name: "secret-env", Description: "Like env, for secrets: each value reaches the hooks inside their standard input (never in a command line), is masked however a hook prints it, and is never read from config-file.", Secret: true},
	{Name: "opcache-reset", Description: "Reset PHP's OPcache when the web server cannot resolve the current symlink ($realpath_root): fpm-reload runs opcache-reset-command on each server right after the switch, before after-activate; url requests opcache-reset-url from the runner after the switch, before the health check. A failure fails the deploy (rolled back with auto-rollback)."},
	{Name: "opcache-reset-command", Description: "For opcache-reset: fpm-reload, the command run on each server, e.g. sudo systemctl reload php8.2-fpm (the deploy user must be allowed to run it without a password)."},
	{Name: "opcache-reset-url", Description: "For opcache-reset: url, the URL of a script that calls opcache_reset(), one per server (newline-separated); each must answer 2xx within healthcheck-timeout. Requested again after a rollback. A password in it is masked."},
	{Name: "reuse", Default: "copy", Description: "How an unchanged file of the live release becomes part of the new one, on the server: copy (a private copy, a reflink where the filesystem has them: no two releases share a file, so a hook or the app writing into one in place never changes another) or hardlink (faster where there are no reflinks, at that price: an in-place write changes every release holding the file, the rollback target too)."},
	{Name: "keep-releases", Default: "5", Description: "How many successful releases to keep."},
	{Name: "healthcheck-url", Description: "URL polled from the runner after the switch (after each step of a rollout); a failure rolls back. {host} in it stands for each host's name as given in host, without user and port (an IPv6 address in brackets): then every host switched in the step is checked at its own URL; without {host} the URL is checked once a step (a load balancer). A password in it (https://user:pass@host/up) is masked and never printed."},
	{Name: "healthcheck-timeout", Default: "30s", Description: "How long the health check may take."},
	{Name: "healthcheck-expect", Description: "Text the health check response (body or a header) must contain; {release-id} stands for the new release id, so a stale release is caught."},
	{Name: "auto-rollback", Default: "true", Description: "Switch back to the previous release when after-activate or the health check fails."},
	{Name: "rollout", Default: "all", Description: "How the switch moves across the hosts (mode: deploy or activate): all (every host at once, all or none), canary (the first canary hosts switch and are checked, then the others together) or batches (batch-size hosts at a time, each batch checked before the next). after-activate and the health check run after each step; a failure puts every host switched so far back (with auto-rollback) and switches no other."},
	{Name: "canary", Description: "With rollout: canary, how many hosts (the first ones in host) switch and are checked before the others; fewer than the hosts. Empty: 1."},
	{Name: "batch-size", Description: "With rollout: batches (required), how many hosts switch at a time: a number (2), or a percentage of the hosts (25%, rounded up, at least 1 host)."},
	{Name: "force", Default: "false", Description: "Go past a safety check that would refuse: with mode: rollback, roll back to a release-id the releases log has no record of (a directory newer than its first release, which may be half-written); with mode: activate, activate release-id although a newer release went live since it was prepared."},
	{Name: "release-id", Description: "Rollback target (mode: rollback); the prepared release to switch to (mode: activate, required); or the id to deploy or prepare as (a fleet prepared by a matrix of jobs: one id computed in a first job)."},
	{Name: "prepared-ttl", Default: "24h", Description: "How long a release left by mode: prepare waits for mode: activate: no run prunes it while it is younger (nor is it ever a default rollback target); after that, the next deploy's prune removes it."},
	{Name: "concurrency", Default: "10", Description: "How many hosts are prepared at once."},
	{Name: "config-file", Description: "YAML file of options (the names of these inputs) shared with CLI runs; inputs left at their defaults take its values. Secrets are never read from it."},
	{Name: "lock-timeout", Default: "5m", Description: "How long to wait for another deploy to the same path to finish before failing with its holder's name."},
}

// Outputs lists every step output. mode: unlock sets only status and
// duration.
var Outputs = []Input{
	{Name: "status", Description: "What the run did. deploy and activate: `deployed` (the new release is live on every host and passed its checks), `rolled-back` (it went live, after-activate or the health check failed, and every host is back on previous-release-id), `failed` (anything else; release-id says what is live); activate also `unchanged` (release-id was live on every host already, as when the job is re-run: nothing switched and no hook ran). prepare: `prepared` (deployed-release-id is ready on every host, waiting for mode: activate; nothing switched), `failed` (nothing switched). rollback: `rolled-back` (release-id is live now), `unchanged` (it already was), `failed` (nothing changed, or the hosts that switched were put back). unlock: `unchanged` (no release is switched) or `failed`."},
	{Name: "release-id", Description: "Id of the release live on every host when the run ended: the new one after a deploy or activate, the previous one after a failed or rolled-back one, the one live before after a prepare (which switches nothing), the target after a rollback. Empty when no release is live, or when the hosts are not on one release or could not be read (the job summary has a row per host)."},
	{Name: "release-path", Description: "Absolute path of release-id on the server (empty when release-id is)."},
	{Name: "deployed-release-id", Description: "Id of the release this run worked on (deploy: the new release; prepare: the prepared one, to pass to mode: activate as release-id; activate: the one it switched to; rollback: the target), whether or not it is live now; empty when the run failed before choosing one."},
	{Name: "previous-release-id", Description: "Id of the release that was live before the run."},
	{Name: "revision", Description: "Revision (commit) recorded when release-id was deployed (empty when release-id is)."},
	{Name: "files-uploaded", Description: "Files sent over the wire (summed over hosts; 0 for activate, which uploads nothing)."},
	{Name: "files-reused", Description: "Files reused from the previous release on the server (summed over hosts)."},
	{Name: "bytes-uploaded", Description: "Bytes of file content sent (summed over hosts)."},
	{Name: "duration", Description: "Wall time of the whole run, e.g. 12.3s."},
	{Name: "rolled-back", Description: "true when the new release went live and was rolled back automatically (status rolled-back in mode deploy or activate)."},
}
