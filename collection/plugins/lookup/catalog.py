# Copyright: bkprov developers
# Apache-2.0
"""Lookup plugin: one resolved entry of the bkprov version catalog."""

from __future__ import annotations

DOCUMENTATION = r"""
name: catalog
short_description: Read one BuildKit or runc release from the bkprov version catalog
description:
  - Returns the catalog entry of a BuildKit version with derived fields
    (C(version), C(binaries), C(flags), C(registry_keys), C(defect_details), C(host_requirements), C(runc)).
  - A term may also be C(latest) (the newest release, no release candidate) or a minor such as C(v0.12)
    (the newest patch of that minor); the entry's C(version) says which release it resolved to.
  - With a term C(runc:<tag>) it returns that runc release instead.
  - The catalog is the collection's C(catalog/versions.yml) plus the user's overlay
    C(<cache>/catalog/overlay.yml) (written by C(bkprov versions --refresh)). It is validated once per
    process; a broken catalog fails with every problem listed.
  - An unknown version fails and names the nearest known versions.
options:
  _terms:
    description: A BuildKit tag such as C(v0.10.6), C(latest), a minor such as C(v0.12), or C(runc:v1.0.2).
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
    CatalogError,
    UnknownVersion,
    load_checked,
    resolve,
    resolve_alias,
    resolve_runc,
    source_text,
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        unknown = kwargs.get("unknown", "fail")
        if unknown not in ("fail", "empty"):
            raise AnsibleError(f"unknown={unknown!r}: use fail or empty")
        try:
            catalog = load_checked()  # validated once per loaded file (cached per mtime)
        except CatalogError as exc:
            raise AnsibleError(str(exc)) from None
        results = []
        for term in terms:
            term = str(term).strip()
            problem = ""
            try:
                if term.startswith("runc:"):
                    results.append(resolve_runc(catalog, term.split(":", 1)[1]))
                else:
                    results.append(resolve(catalog, resolve_alias(catalog, term)))
                continue
            except UnknownVersion as exc:
                problem = str(exc)
            if unknown != "empty":  # raised outside the except: Ansible would print the cause twice
                raise AnsibleError(
                    f"{problem} The catalog is {source_text(catalog)}; pick a listed version, or run `bkprov versions --refresh` "
                    "to add releases published since."
                )
            results.append({})
        return results
