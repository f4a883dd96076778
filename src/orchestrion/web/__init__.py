"""The web dashboard that ``orchestrion serve`` shows at ``/ui/``.

Server-rendered page shells (Jinja2, autoescaped) and small static scripts, shipped in the
package: no build step, no CDN, nothing to install. The pages hold no workflow data; their
scripts read and change everything through the public REST API and its event stream, signed
in by the session cookie of ``POST /v1/session``, so the dashboard can do exactly what a client
with the same key can, and no more. ``mount`` adds it to an API application.
"""

from orchestrion.web.pages import mount

__all__ = ["mount"]
