"""The Open Inference Protocol (KServe V2) over HTTP, next to the ``/v1`` multipart API.

The layers, each testable without the app:

- :mod:`.datatypes`: V2 datatype names <-> numpy dtypes <-> manifest dtypes;
- :mod:`.codec`: request bodies (JSON header plus the binary tensor data extension) ->
  :class:`~.codec.Tensor` objects, and output tensors -> response bodies;
- :mod:`.binding`: decoded tensors -> per-row uploads (raw BYTES inputs) or per-row
  :class:`~service.runtime.rows.FeatureRow` objects (ready feature tensors), checked against
  the manifest; the requested outputs resolved before any inference;
- :mod:`.metadata`: server metadata, model metadata and the Triton-style model config;
- :mod:`.errors`: the protocol's error body ``{"error": "..."}`` and status codes.

The HTTP routes live in :mod:`service.routes.v2`.
"""
