"""Unit files as users copy them from upstream, for tests that set BuildKit up by hand."""

# Upstream examples/systemd/system units (v0.10.0 … v0.25.0, reference §2).
UPSTREAM_SERVICE = """\
[Unit]
Description=BuildKit
Requires=buildkit.socket
After=buildkit.socket
Documentation=https://github.com/moby/buildkit

[Service]
Type=notify
ExecStart=/usr/local/bin/buildkitd --addr fd://

[Install]
WantedBy=multi-user.target
"""
