"""Pure decision code, one module per kind: build desired children and compute status.

Nothing here imports kopf, the Kubernetes client or boto3 (checked by a test).
"""
