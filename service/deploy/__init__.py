"""Running several replicas behind nginx without Docker (see docs/deployment.md)."""
