package deploy

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/deploy/remote"
	"github.com/atomic-deploy/atomic-deploy/internal/release"
	"github.com/atomic-deploy/atomic-deploy/internal/transport"
	"github.com/atomic-deploy/atomic-deploy/internal/words"
)

// Prepare puts release id on the host, complete and ready to switch to:
// upload (only what changed), shared links, writable dirs, before-activate.
func (h *Host) Prepare(ctx context.Context, m *release.Manifest, id string) error {
	h.ReleaseID = id
	endUpload := h.timed(PhaseUpload)
	uploading := true
	defer func() {
		if uploading { // it failed there: the last phase is where
			endUpload()
		}
	}()
	if slices.Contains(h.root.releases, id) {
		return h.releaseExists()
	}
	// Logged before the directory exists, so a crash at any later point
	// leaves a release the next deploy knows to be unfinished.
	started := Record{ID: id, Status: StatusStarted, Revision: h.S.Revision, Actor: h.S.Actor, RunURL: h.S.RunURL, StartedAt: time.Now().UTC()}
	if err := h.upload.begin(ctx, started); err != nil {
		return err
	}
	h.state = created
	m, unseeded := h.withoutSeededShared(m)
	h.manifest = m
	scan, edited := unsealed(h.root.live.scan, h.root.live.seal, h.S.WritableDirs)
	if len(edited) > 0 {
		h.Log.Warnf("%s: %s of the live release %s changed on the server since it was deployed (edited in place?); uploaded again instead of reused: %s",
			h.Name, words.Count(int64(len(edited)), "file"), h.root.currentID, listed(edited, 10))
	}
	plan := sharedPlan(m, h.root.live.manifest, scan).uploadOnly(unseeded)
	h.root.live.manifest, h.root.live.scan, h.root.live.seal = nil, nil, nil // large on big releases; the plan has what it needs
	manifestStored, err := h.transfer(ctx, plan, started)
	if err != nil {
		return err
	}
	if err := h.linkShared(ctx, m); err != nil {
		return err
	}
	if err := h.recordState(ctx, manifestStored); err != nil {
		return err
	}
	if err := h.makeWritable(ctx); err != nil {
		return err
	}
	endUpload()
	uploading = false
	if h.S.BeforeActivate != "" {
		defer h.timed(PhaseHooks)()
	}
	return h.finishRelease(ctx)
}

// finishing is what finishes a release on the server, in the command of
// its last step: its seal (seal.go), the link the switch renames, and,
// where that command switches too, the switch (sw).
type finishing struct {
	seal, link, target string
	sw                 *switching
}

// switching is what a command that also switches needs (switch_now,
// remote/lib/finish.sh).
type switching struct {
	pid, token, owner string // the lock's guard (sessionLock.guard)
	next, current     string // the link renamed over current
	log, success      string // the releases log, and the success record or ""
}

// inlineSwitching is the switch of this host's release for the command
// that makes it (h.inline), the link to rename left to the caller.
func (h *Host) inlineSwitching() switching {
	sw := switching{current: h.L.Current(), log: h.L.Log()}
	sw.pid, sw.token, sw.owner, _ = h.lock.guard()
	if h.inline == switchAndRecord {
		line, _ := json.Marshal(Record{ID: h.ReleaseID, Status: StatusSuccess, FinishedAt: time.Now().UTC()})
		sw.success = string(line)
	}
	return sw
}

// finishRelease runs before-activate, seals the release and makes the new
// link now (the tar stream may have brought it), so that the switch itself
// is one rename: across a fleet every host flips within about one round
// trip. Sealing and linking ride with the upload's command where nothing
// runs after it (sealsInUpload; its stream brought the link), else with
// the hook's, or share one (remote/seal.sh): no round trip of their own.
// Where before-activate's command makes the switch too (h.inline), the
// release is live after it.
// The host that runs before-activate-once next in this run is sealed by
// that command only (h.resealed).
func (h *Host) finishRelease(ctx context.Context) error {
	if h.state.switched() {
		return nil // the upload's command switched, once it had sealed
	}
	var then finishing
	if h.seals() && !h.sealed && !h.resealed {
		then.seal = h.L.Seal(h.ReleaseID)
	}
	if h.nextLink == "" && !h.linkless {
		then.link, then.target = path.Join(h.L.Root, tempLinkPrefix+randomToken()), currentTarget(h.ReleaseID)
	}
	var err error
	switch {
	case h.S.BeforeActivate != "":
		err = h.runLastHook(ctx, "before-activate", h.S.BeforeActivate, then, h.execsAfterPrepare())
	case then.seal != "":
		var out strings.Builder
		err = h.T.Exec(ctx, remote.Seal.Command(h.L.Release(h.ReleaseID), then.seal, then.link, then.target), h.warmAhead(nil, h.execsAfterPrepare()), &out, transport.LimitWriter(&out, 4096))
		if err != nil {
			err = fmt.Errorf("finish %s: %w: %s", h.ReleaseID, err, strings.TrimSpace(out.String()))
		}
	case then.link != "":
		if err = h.T.Symlink(ctx, then.target, then.link); err != nil {
			err = fmt.Errorf("prepare the switch to %s: %w", h.ReleaseID, err)
		}
	}
	if err != nil || h.state.switched() {
		return err // switched: by before-activate's command
	}
	h.sealed = h.sealed || then.seal != ""
	if then.link != "" {
		h.nextLink = then.link
	}
	return nil
}

// runLastHook runs hook name (before-activate, before-activate-once) in
// the release, its command finishing the release (then) and, where it is
// the last command before the switch and makes it (h.inline), switching
// (runHookIn settles whether it did). The caller records what finished.
func (h *Host) runLastHook(ctx context.Context, name, script string, then finishing, more bool) error {
	if h.inline != switchLater && h.switchStep() == name {
		sw := h.inlineSwitching()
		sw.next = cmp.Or(then.link, h.nextLink)
		then.sw = &sw
	}
	return h.runHookIn(ctx, name, h.L.Release(h.ReleaseID), script, nil, then, more)
}

func (h *Host) releaseExists() error {
	return fmt.Errorf("release %s already exists on %s; a release id is used once (choose another release-id or let it default to the time)", h.ReleaseID, h.Name)
}

// canSwitchInline reports whether the last command before this host's
// switch (switchStep) can also switch: its server-side switch can check
// the lock (Deploy adds: one host, so that nothing else has to happen
// first). A hook's command always can; the upload's only when it is one
// command (the tar stream) and nothing follows it: every shared path
// seeded (the stream brings their links; the command makes writable-dirs
// writable).
func (h *Host) canSwitchInline() bool {
	if _, _, _, checkable := h.lock.guard(); !checkable {
		return false
	}
	if h.switchStep() != "upload" {
		return true
	}
	return h.streamCompletes()
}

// streamCompletes reports whether the upload's command leaves nothing to
// do in the release: it is one tar stream, which brings every link into
// shared/ (none is seeded by this deploy over SFTP afterwards), and the
// command makes writable-dirs writable once the stream is in.
func (h *Host) streamCompletes() bool {
	_, tar := h.upload.(tarUpload)
	return tar && len(h.streamedSharedLinks()) == len(h.sharedPaths())
}

// sealsInUpload reports whether the upload's command seals the release:
// it is the last to run in it (no hook follows), so the seal needs no
// command of its own, on every host of a fleet and for mode: prepare too.
func (h *Host) sealsInUpload() bool {
	return h.seals() && h.switchStep() == "upload" && h.streamCompletes()
}

// switchStep is the last step of a deploy on this host before its switch:
// before-activate-once, before-activate or the upload.
func (h *Host) switchStep() string {
	switch {
	case h.S.BeforeActivateOnce != "":
		return "before-activate-once"
	case h.S.BeforeActivate != "":
		return "before-activate"
	}
	return "upload"
}

// switchesInUpload reports whether the upload's command switches.
func (h *Host) switchesInUpload() bool {
	return h.inline != switchLater && h.switchStep() == "upload"
}

// listed is the first n of paths, and how many more there are.
func listed(paths []string, n int) string {
	if len(paths) <= n {
		return strings.Join(paths, ", ")
	}
	return strings.Join(paths[:n], ", ") + fmt.Sprintf(" and %d more", len(paths)-n)
}

// execsAfterPrepare reports whether a command of this host's follows its
// Prepare (a hook around the switch).
func (h *Host) execsAfterPrepare() bool {
	return h.S.BeforeActivateOnce != "" || h.S.AfterSwitch.Script != "" || h.S.AfterActivate != ""
}

// execsAfterUpload reports whether a command follows the upload's before
// Prepare ends: writable-dirs (after an SFTP upload), before-activate, or
// the seal.
func (h *Host) execsAfterUpload() bool {
	return !h.switchesInUpload() && (len(h.S.WritableDirs) > 0 && !h.writableInUpload() || h.S.BeforeActivate != "" || h.seals() && !h.sealsInUpload())
}
