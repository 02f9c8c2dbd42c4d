#!/usr/bin/env bash
# ansible-test sanity for collection/, as prometheus-community/ansible runs it in CI.
# ansible-test needs the collection at .../ansible_collections/<namespace>/<name>, so it runs on a copy.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/bkprov/buildkit"
mkdir -p "$(dirname "$dest")"
cp -r "$root/collection" "$dest"
find "$dest" -name __pycache__ -prune -exec rm -rf {} +

# ansible-test bootstraps pip in its venvs with a script from ci-files.testing.ansible.com. Where that host
# is unreachable, an equivalent stand-in (ensurepip, then pip from the configured index) is put in its cache.
pip_version=$(python -c 'from ansible_test._internal.python_requirements import get_venv_packages as g
from ansible_test._internal.host_configs import NativePythonConfig as N
import sys; print(g(N(version="%d.%d" % sys.version_info[:2], path=sys.executable))["pip"])')
cached="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$cached" ] && ! python -c "import urllib.request as u; u.urlopen('https://ci-files.testing.ansible.com/', timeout=5)" 2>/dev/null; then
  mkdir -p "$(dirname "$cached")"
  cp "$root/tests/sanity/get_pip_offline.py" "$cached"
fi

cd "$dest"
python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --python "$python_version" --requirements "$@"
