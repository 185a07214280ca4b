"""HTTP routes, one module per resource: inference (predict, embed), models, health."""
