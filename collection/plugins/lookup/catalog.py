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

import difflib
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

CATALOG = Path(__file__).resolve().parents[2] / "catalog" / "versions.yml"


def nearest(wanted: str, known: list[str]) -> str:
    close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.5)
    return ", ".join(close or known[-3:])


def resolve(catalog: dict, version: str) -> dict:
    versions = catalog["versions"]
    if version not in versions:
        raise AnsibleError(
            f"BuildKit {version!r} is not in the bkprov catalog ({CATALOG}). "
            f"Nearest known: {nearest(version, list(versions))}. "
            "Add it to the catalog or pick a listed version."
        )
    entry = dict(versions[version], version=version)
    eras = list(catalog["flag_eras"])
    flags: list[str] = []
    registry_keys: list[str] = []
    for era in eras[: eras.index(entry["flags_era"]) + 1]:
        flags += catalog["flag_eras"][era]["flags"]
        registry_keys = catalog["flag_eras"][era].get("registry_keys", registry_keys)
    entry["binaries"] = catalog["contents"][entry["contents"]]
    entry["flags"] = flags
    entry["registry_keys"] = registry_keys
    entry["defect_details"] = [dict(catalog["defects"][d], id=d) for d in entry["defects"]]
    entry["runc"] = resolve_runc(catalog, entry["runc_release"])
    return entry


def resolve_runc(catalog: dict, version: str) -> dict:
    releases = catalog["runc_releases"]
    if version not in releases:
        raise AnsibleError(
            f"runc {version!r} is not in the bkprov catalog. Nearest known: {nearest(version, list(releases))}."
        )
    entry = dict(releases[version], version=version)
    entry["defect_details"] = [dict(catalog["runc_defects"][d], id=d) for d in entry["defects"]]
    return entry


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        unknown = kwargs.get("unknown", "fail")
        if unknown not in ("fail", "empty"):
            raise AnsibleError(f"unknown={unknown!r}: use fail or empty")
        with CATALOG.open(encoding="utf-8") as handle:
            catalog = yaml.safe_load(handle)
        results = []
        for term in terms:
            term = str(term).strip()
            try:
                if term.startswith("runc:"):
                    results.append(resolve_runc(catalog, term.split(":", 1)[1]))
                else:
                    results.append(resolve(catalog, term))
            except AnsibleError:
                if unknown != "empty":
                    raise
                results.append({})
        return results
