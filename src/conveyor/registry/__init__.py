"""OCI Distribution client (implements ``core.ports.Registry``) on httpx.

Modules: ``endpoints`` (how to reach one registry), ``auth`` (anonymous, basic and
bearer-token challenge as an ``httpx.Auth`` flow), ``dockerconfig`` (docker
``config.json`` and credential helpers), ``manifests`` (media types, parsing),
``client`` (``DistributionRegistry``), ``copy`` (copy by digest), ``referrers``
(OCI 1.1 referrers with the tag-schema fallback). httpx errors never leave this
package: ``_errors`` translates them into ``conveyor.core.errors.RegistryError``.
"""

from __future__ import annotations
