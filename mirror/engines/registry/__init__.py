"""The daemonless ``registry`` engine and the small OCI distribution client it stands on.

``errors`` (what can go wrong, as a tree), ``auth`` (challenges, tokens, credentials),
``hosts`` (per-host backoff and pull limits), ``client`` (requests, manifests, blobs),
``engine`` (plans, retries and copies). Nothing is re-exported here: importing
``mirror.registry`` costs nothing until a module below is imported.
"""
