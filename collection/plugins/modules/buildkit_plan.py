# Copyright: bkprov developers
# Apache-2.0
"""Documentation stub; the work is done by the action plugin of the same name (controller only)."""

DOCUMENTATION = r"""
module: buildkit_plan
short_description: Resolve a BuildKit version in the bkprov catalog, check the buildkit role's variables, plan TLS
author: bkprov developers (@bkprov)
description:
  - Runs on the controller only; the buildkit role's first task.
  - Resolves C(version) (a tag, C(latest) or a minor such as C(v0.12)) in the catalog and returns the entry
    as C(release).
  - Refuses flags and registry keys the version does not know, a C(tcp_address) that is not C(tcp://HOST:PORT),
    TCP listeners hidden in C(extra_flags), and incomplete own TLS files, naming each problem and the fix.
  - Sets the fact C(buildkit_release) to that entry.
  - Returns C(tls), the TCP/TLS plan (unit flags, local buildctl arguments, the host's TLS files by controller
    source path, the server certificate's names).
options:
  version:
    description: BuildKit version.
    type: str
    required: true
  extra_flags:
    description: buildkit_extra_flags.
    type: list
    elements: str
    default: []
  registries:
    description: buildkit_registries.
    type: dict
    default: {}
  oci_worker_binary:
    description: buildkit_oci_worker_binary.
    type: str
    default: ""
  tcp_address:
    description: buildkit_tcp_address.
    type: str
    default: ""
  insecure_tcp:
    description: buildkit_insecure_tcp.
    type: bool
    default: false
  tls_mode:
    description: buildkit_tls_mode.
    type: str
    default: mutual
  tls_dir:
    description: buildkit_tls_dir.
    type: path
    default: /etc/buildkit/tls
  tls_local_dir:
    description: buildkit_tls_local_dir.
    type: path
    default: ""
  tls_ca_cert:
    description: buildkit_tls_ca_cert.
    type: path
    default: ""
  tls_server_cert:
    description: buildkit_tls_server_cert.
    type: path
    default: ""
  tls_server_key:
    description: buildkit_tls_server_key.
    type: path
    default: ""
"""

EXAMPLES = r"""
- name: Resolve the version and check the variables
  bkprov.buildkit.buildkit_plan:
    version: v0.10.6
    tcp_address: tcp://127.0.0.1:1234
  register: plan
"""

RETURN = r"""
release:
  description: The catalog entry (as the C(bkprov.buildkit.catalog) lookup returns it).
  type: dict
  returned: always
tls:
  description: The TCP/TLS plan (enabled, verify_clients, ca_in_config, local, buildctl_args, files, absent, sans).
  type: dict
  returned: success
"""
