package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/testutil/deploytest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// helperEnv makes the test binary a deploy process (see helperMain): a Go
// caller of deploy.Deploy with settings the CLI does not expose (a short
// lease TTL), which a test can SIGKILL like the real binary.
const helperEnv = "ATOMIC_DEPLOY_FAULTS_HELPER"

type helperConfig struct {
	Name     string // the target's
	SSH      sshx.Config
	Root     string
	Source   string
	TTL      time.Duration
	Parallel int
}

// helperMain deploys once and exits 0 on success, 1 on failure.
func helperMain() int {
	var c helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &c); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx := context.Background()
	m, err := release.Build(ctx, release.Options{Source: c.Source, Revision: "helper"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	log := &deploytest.Log{}
	o := deploy.Options{
		Targets:  []deploy.Target{deploytest.SSHTarget(c.Name, c.SSH)},
		Root:     c.Root,
		Settings: &deploy.Settings{KeepReleases: 3, Revision: "helper", Actor: "helper", Parallel: c.Parallel, Lock: deploy.LockOptions{TTL: c.TTL, Wait: 20 * time.Second}},
		Log:      log, Concurrency: 1, AutoRollback: true,
	}
	_, err = deploy.Deploy(ctx, o, m)
	os.Stderr.WriteString(log.String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy failed:", err)
		return 1
	}
	return 0
}
