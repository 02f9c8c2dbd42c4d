# Copyright: bkprov developers
# Apache-2.0
"""Documentation stub; the work is done by the action plugin of the same name."""

DOCUMENTATION = r"""
module: artifact
short_description: Fetch a release artifact into the controller cache and verify its sha256
author: bkprov developers (@bkprov)
description:
  - Runs on the controller only. Uses the cache when the file is there, else a mirror
    (URL or directory in the release layout), else the upstream URL.
  - The expected sha256 is, strongest first, the hash recorded when the file was imported,
    the catalog's C(sha256), the hash recorded on first use; with none, the hash is recorded now.
  - A mismatch fails and names the file, the expected and the actual hash.
options:
  url:
    description: Upstream URL (C(https://github.com/...)).
    type: str
    required: true
  cache_dir:
    description: Controller cache directory (release layout).
    type: path
    required: true
  mirror:
    description: Base URL or directory that replaces C(https://github.com).
    type: str
    default: ""
  sha256:
    description: Expected sha256 from the catalog, empty when unknown.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Fetch the BuildKit tarball
  bkprov.buildkit.artifact:
    url: https://github.com/moby/buildkit/releases/download/v0.10.6/buildkit-v0.10.6.linux-amd64.tar.gz
    cache_dir: ~/.cache/bkprov
    sha256: 9a21a41298c4a2a7a2b57cb90d37463d3a9057aedfe97a04b0e4fd6f622549d8
"""

RETURN = r"""
path:
  description: Absolute path of the verified file in the cache.
  type: str
  returned: success
sha256:
  description: The file's sha256.
  type: str
  returned: success
origin:
  description: Where the expected hash came from (catalog, import, first-use).
  type: str
  returned: success
"""
