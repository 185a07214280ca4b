"""The Open Inference Protocol (KServe V2) over HTTP, next to the ``/v1`` multipart API.

The layers, all but the last testable without the app:

- :mod:`.datatypes`: V2 datatype names <-> numpy dtypes <-> manifest dtypes;
- :mod:`.codec`: request bodies (JSON header plus the binary tensor data extension) ->
  :class:`~.codec.Tensor` objects, and output tensors -> response bodies;
- :mod:`.binding`: decoded tensors -> per-row uploads (raw BYTES inputs) or per-row
  :class:`~service.runtime.rows.FeatureRow` objects (ready feature tensors), checked against
  the manifest; the requested outputs resolved before any inference;
- :mod:`.metadata`: server metadata, model metadata and the Triton-style model config;
- :mod:`.schemas`: the JSON bodies (the request header is validated with them);
- :mod:`.errors`: the protocol's error body ``{"error": "..."}`` and status codes;
- :mod:`.inference`: a request's rows through the model's batcher, shared with ``/v1``.

The HTTP routes live in :mod:`service.routes.v2`.
"""
