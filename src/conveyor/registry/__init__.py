"""OCI Distribution client (implements ``core.ports.Registry``) on httpx.

Modules: ``endpoints`` (how to reach one registry), ``auth`` (anonymous, basic and
bearer-token challenge as an ``httpx.Auth`` flow; tokens by GET or the OAuth2
POST flow), ``dockerconfig`` (docker ``config.json``, credential helpers,
identity tokens), ``manifests`` (media types, parsing),
``client`` (``DistributionRegistry``), ``copy`` (copy by digest), ``referrers``
(OCI 1.1 referrers with the tag-schema fallback). httpx errors never leave this
package: ``_errors`` translates them into ``conveyor.core.errors.RegistryError``.
"""

from __future__ import annotations

import sys

# httpx's package __init__ imports its own command-line client (``httpx._main``:
# click, rich, pygments), about 0.1 s of every short `conveyor image` command.
# httpx guards that import with ``except ImportError`` for installs without the
# ``httpx[cli]`` extra; a ``None`` entry in sys.modules makes the import raise
# ImportError, so httpx takes that path. Only the ``httpx`` console entry point
# is affected (in this process), and nothing here uses it. No effect when httpx
# was already imported.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # the documented "no module" mark
