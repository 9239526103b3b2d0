"""The daemonless ``registry`` engine and the small OCI distribution client it stands on.

``auth`` (challenges, tokens, credentials), ``hosts`` (per-host backoff and pull limits),
``client`` (requests, manifests, blobs), ``blobread`` (one blob's bytes, resumed or in ranged
parts), ``referrers`` (signatures and SBOMs), ``engine`` (plans, retries and copies, and the
entry point's plugin). What can go wrong is the ``RegistryError`` branch of
:mod:`mirror.errors`. Nothing is re-exported here: importing ``mirror.engines.registry`` costs
nothing until a module below is imported.
"""
