package deploy

import (
	"path"
	"strings"
)

// Layout names the paths under a deploy root.
type Layout struct{ Root string }

func (l Layout) Releases() string          { return path.Join(l.Root, "releases") }
func (l Layout) Release(id string) string  { return path.Join(l.Root, "releases", id) }
func (l Layout) Shared() string            { return path.Join(l.Root, "shared") }
func (l Layout) Current() string           { return path.Join(l.Root, "current") }
func (l Layout) Meta() string              { return path.Join(l.Root, ".atomic-deploy") }
func (l Layout) Log() string               { return path.Join(l.Meta(), "releases.log") }
func (l Layout) Lock() string              { return path.Join(l.Meta(), "lock") }
func (l Layout) Manifests() string         { return path.Join(l.Meta(), "manifests") }
func (l Layout) Manifest(id string) string { return path.Join(l.Manifests(), id+manifestEnding) }
func (l Layout) Trash() string             { return path.Join(l.Meta(), "trash") } // releases being pruned

// manifestEnding ends the name of a release's stored manifest.
const manifestEnding = ".json.gz"

// ManifestDelta is where the upload stream puts the delta that upload.sh
// rebuilds Manifest(id) from.
func (l Layout) ManifestDelta(id string) string { return path.Join(l.Manifests(), id+".delta") }

// Seal is where release id's seal is kept (seal.go).
func (l Layout) Seal(id string) string { return path.Join(l.Manifests(), id+sealEnding) }

const sealEnding = ".seal"

// SealShape is where the shape of release id's seal is kept: what a plan
// reads of the seal (remote/lib/finish.sh).
func (l Layout) SealShape(id string) string { return l.Seal(id) + ".shape" }

// ReleaseFiles are the files kept for release id outside its directory:
// its manifest, the delta it is rebuilt from (and its copy from the
// upload's head), upload.sh's temporaries (named after the manifest), its
// seal and the seal's shape. Each is named <id>.<something> in
// manifests/, which is how holder.sh's prune finds them.
func (l Layout) ReleaseFiles(id string) []string {
	m := l.Manifest(id)
	return []string{m, l.ManifestDelta(id), l.ManifestDelta(id) + ".head", m + ".tmp", m + ".plain.tmp", m + ".same.tmp", m + ".moved.tmp", l.Seal(id), l.Seal(id) + ".tmp", l.SealShape(id), l.SealShape(id) + ".tmp", l.SealShape(id) + ".raw.tmp"}
}

// relative is p, a path below the root, relative to the root: the names
// of the upload stream, which is extracted there.
func (l Layout) relative(p string) string { return strings.TrimPrefix(p, l.Root+"/") }

// currentTarget is what `current` holds for a release: relative, so the
// deploy root can be moved or mounted elsewhere (a container, a chroot).
func currentTarget(id string) string { return "releases/" + id }

// tempLinkPrefix names the temporary symlink renamed over `current`.
const tempLinkPrefix = ".current.tmp-"

// releaseIDFromTarget reads the release id out of a `current` link target,
// whether relative (ours) or absolute (Deployer, Capistrano).
func (l Layout) releaseIDFromTarget(target string) (string, bool) {
	t := strings.TrimSuffix(target, "/")
	if !path.IsAbs(t) {
		t = path.Join(l.Root, t)
	}
	if path.Dir(t) != l.Releases() {
		return "", false
	}
	return path.Base(t), true
}

// sharedLinkTarget is the relative symlink placed at releases/<id>/<rel>
// pointing to shared/<rel>.
func sharedLinkTarget(rel string) string {
	depth := strings.Count(rel, "/") + 2 // <rel>'s parents plus releases/<id>
	return strings.Repeat("../", depth) + "shared/" + rel
}
