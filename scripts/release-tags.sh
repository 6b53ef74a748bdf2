#!/usr/bin/env bash
# release-tags.sh TAG: which tags a release of the git tag TAG moves,
# printed as GITHUB_OUTPUT lines for .github/workflows/release.yml:
#
#   major=vX      for a final release vX.Y.Z (digits only): the major tag
#                 that every `uses: ...@vX` workflow follows, force-moved to
#                 this release. Empty for a pre-release (v1.3.0-rc.1) or a
#                 tag with build metadata (v1.3.0+meta): those get their own
#                 tag and image only, and no @vX user runs them.
#   minor=vX.Y    the image's vX.Y tag; empty when major is.
#
# A tag that is not vX.Y.Z[-PRE][+BUILD] is refused (exit 2): nothing is
# released for it.
set -euo pipefail

tag=${1:?usage: release-tags.sh TAG}
if [[ $tag =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]]; then
  printf 'major=v%s\nminor=v%s.%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
elif [[ $tag =~ ^v[0-9]+\.[0-9]+\.[0-9]+[-+][0-9A-Za-z.+-]+$ ]]; then
  printf 'major=\nminor=\n'
else
  echo "release-tags.sh: \"$tag\" is not a release tag: vX.Y.Z, or vX.Y.Z-PRE for a pre-release" >&2
  exit 2
fi
