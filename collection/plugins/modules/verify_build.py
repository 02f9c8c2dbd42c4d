# Copyright: bkprov developers
# Apache-2.0
"""Documentation stub; the work is done by the action plugin of the same name."""

DOCUMENTATION = r"""
module: verify_build
short_description: Prove an installed BuildKit with a real buildctl build (COPY and RUN) in one command
author: bkprov developers (@bkprov)
description:
  - Builds a Dockerfile that COPYs the host's static buildctl into C(FROM scratch) and RUNs it; the RUN step
    must print C(buildctl github.com/moby/buildkit VERSION).
  - The version's COPY mode comes from the bkprov catalog; before FileOp (v0.3.x, v0.4.x) a COPY helper
    image is served on localhost for the build, or taken from the verify role's C(verify_registry).
  - The script is the verify role's C(templates/verify-build.sh.j2), run as one shell command on the host.
    Skipped in check mode.
options:
  version:
    description: The installed BuildKit version; empty means read it from C(buildctl --version) (one more command).
    type: str
    default: ""
  buildctl:
    description: buildctl to build with.
    type: path
    default: /usr/local/bin/buildctl
  return_script:
    description: Also return the rendered build script as C(script) (C(bkprov provision) re-runs it on a host it
      finds up to date); off by default because it is long and Ansible prints it.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Build with BuildKit v0.10.6
  bkprov.buildkit.verify_build:
    version: v0.10.6
"""

RETURN = r"""
run_line:
  description: The RUN step's output line.
  type: str
  returned: always
installed_version:
  description: The version C(buildctl --version) reports.
  type: str
  returned: always
version:
  description: The catalog version the build was checked against.
  type: str
  returned: always
script:
  description: The shell script that ran the build, as run on the host.
  type: str
  returned: when return_script is true
"""
