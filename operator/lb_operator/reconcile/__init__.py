"""Level-based reconciliation of the five kinds against a cloud backend; knows nothing of Kopf.

``engine`` holds the one flow (plan first, lock only to mutate); ``kinds``
the five adapters; ``resources`` the operator's view of a custom object.
"""
