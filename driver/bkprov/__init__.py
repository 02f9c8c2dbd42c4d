"""bkprov: install any archived BuildKit release and prove it with a real build."""

from bkprov.paths import expose_collection

__version__ = "0.1.0"

# The collection's Python (catalog, artifacts, diagnosis) is imported by its real name,
# ansible_collections.bkprov.buildkit.plugins.module_utils.*, from the collections root bkprov ships.
expose_collection()
