"""HTTP routes, one module per resource: inference, models, health, metrics, the web page."""
