"""Offline stand-in for the pip bootstrap script ansible-test downloads (its host is unreachable here).

ansible-test runs it in a fresh venv with pip's arguments: bootstrap pip with ensurepip, then
let that pip install the requested version from the machine's configured package index.
"""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip sets it to /dev/null, which would hide pip.conf
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
