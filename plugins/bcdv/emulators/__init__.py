"""Local HTTPS emulators of Entra ID, Business Central API v2.0 and Dataverse Web API v9.2.

A development, test and demo tool: the product (``bcdv.clients`` etc.) never imports this
package and this package imports nothing from the product.

Services and default ports (all on 127.0.0.1, HTTPS with a CA generated in ``DIR/tls``):

- identity (Entra ID token endpoint + OpenID discovery): 47443
- Business Central API v2.0: 47444
- Dataverse Web API v9.2: 47445

Fixed identities (see :mod:`bcdv.emulators.config`): tenant ``TENANT_ID``, application
(client) id ``CLIENT_ID``; the client secret is generated once per data directory and kept
in ``DIR/identity.json``.

Entry points:

- :func:`bcdv.emulators.testing.run_emulators` - in-process context manager for tests.
- :func:`bcdv.emulators.cli.main` - ``bcdv emulators start|env|reset|seed|faults|clock``.

Every service also answers a plainly non-Microsoft admin API under ``/_emulator`` (reset,
seed, clock, faults, throttling, request counters, record inspection); see
:mod:`bcdv.emulators.base`.
"""
