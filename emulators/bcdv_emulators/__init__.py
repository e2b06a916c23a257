"""Local HTTPS emulators of Entra ID, Business Central API v2.0 and Dataverse Web API v9.2.

A development, test and demo tool: the product (``bcdv.clients`` etc.) never imports this
package and this package imports nothing from the product. Reference:
shared/reference/wire-protocols.md (sections A-D); unverified points (section E) are options.

Services and default ports (127.0.0.1, HTTPS with a CA generated once in ``DIR/tls``):

- identity (Entra ID OpenID discovery, JWKS, client-credentials token endpoint): 47443
- Business Central API v2.0: 47444
- Dataverse Web API v9.2: 47445

Fixed identities (:mod:`bcdv_emulators.config`): tenant ``TENANT_ID`` (alias
``cronus.onmicrosoft.com``), application (client) id ``CLIENT_ID``; the client secret is
generated once per data directory (``DIR/identity.json``), tokens are RS256 JWTs signed with
``DIR/signing.key``. Data lives in ``DIR/bc.sqlite`` and ``DIR/dv.sqlite`` (kept across
restarts); ``DIR/endpoints.json`` says where everything is.

Entry points:

- :func:`bcdv_emulators.testing.run_emulators` - in-process context manager (free ports).
- :func:`bcdv_emulators.cli.main` - ``bcdv emulators start|env|reset|seed|faults|clock|
  throttling|requests`` (also ``python -m bcdv_emulators``).
- ``python -m bcdv_emulators.bench`` - the emulators-alone benchmark.

Admin API under ``/_emulator`` on every service: see :mod:`bcdv_emulators.base` (reset, seed,
requests, clock, faults, throttling, records) plus ``PUT /_emulator/keys`` on Dataverse.

Options (keyword arguments of ``run_emulators``/``server.start``, ``--option name=json`` on
the CLI):

=============================== ============ ==================================================
option                          default      meaning
=============================== ============ ==================================================
reseed                          False        apply ``seed`` even if DIR already holds data
throttling                      True         False disables both APIs' service protection
bc_read_only                    "reject"     "ignore": drop read-only properties in bodies
bc_delete_requires_if_match     False        True: DELETE without If-Match -> 400
bc_maxpagesize_over_limit       "cap"        "413": maxpagesize/$top over 20,000 -> 413
bc_batch_atomicity_group        "reject"     "ignore": accept OData 4.01 atomicityGroup
bc_business_relation_contacts   True         customers/vendors get a company contact
bc_webhook_delay_seconds        30           delay before a change notification is sent
bc_webhook_ca_bundle            (requests)   CA for outbound webhook calls
dv_alternate_keys               {}           e.g. {"accounts": [["accountnumber"]]}
dv_maxpagesize_over_limit       "cap"        "400": odata.maxpagesize over 5,000 -> 400
dv_change_tracking_days         7            delta token lifetime
=============================== ============ ==================================================
"""
