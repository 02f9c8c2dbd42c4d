# Copyright: bkprov developers
# Apache-2.0
"""Lookup plugin: one resolved entry of the bkprov version catalog."""

from __future__ import annotations

DOCUMENTATION = r"""
name: catalog
short_description: Read one BuildKit or runc release from the bkprov version catalog
description:
  - Returns the catalog entry of a BuildKit version with derived fields
    (C(version), C(binaries), C(flags), C(registry_keys), C(defect_details), C(runc)).
  - With a term C(runc:<tag>) it returns that runc release instead.
  - An unknown version fails and names the nearest known versions.
options:
  _terms:
    description: A BuildKit tag such as C(v0.10.6), or C(runc:v1.0.2).
    required: true
  unknown:
    description: What an unknown version gives, C(fail) or C(empty) (an empty dict).
    type: str
    default: fail
    choices: [fail, empty]
"""

EXAMPLES = r"""
- name: Show the runc pinned for v0.10.6
  ansible.builtin.debug:
    msg: "{{ lookup('bkprov.buildkit.catalog', 'v0.10.6').runc_pin.describe }}"
"""

RETURN = r"""
_raw:
  description: The resolved catalog entry, one per term.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible_collections.bkprov.buildkit.plugins.module_utils.catalog import (
    CATALOG,
    UnknownVersion,
    load,
    resolve,
    resolve_runc,
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        unknown = kwargs.get("unknown", "fail")
        if unknown not in ("fail", "empty"):
            raise AnsibleError(f"unknown={unknown!r}: use fail or empty")
        catalog = load()
        results = []
        for term in terms:
            term = str(term).strip()
            try:
                if term.startswith("runc:"):
                    results.append(resolve_runc(catalog, term.split(":", 1)[1]))
                else:
                    results.append(resolve(catalog, term))
                continue
            except UnknownVersion as exc:
                problem = str(exc)
            if unknown != "empty":  # raised outside the except: Ansible would print the cause twice
                raise AnsibleError(f"{problem} The catalog is {CATALOG}; add the version there or pick a listed one.")
            results.append({})
        return results
