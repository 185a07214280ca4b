"""Feature extraction: pure functions from uploaded bytes plus a manifest recipe to arrays.

The same functions build the training features in ``export/`` and the serving features in
``service/``, so a model never sees inputs prepared differently from the ones it learnt on.
Each module translates its library's exceptions (Pillow, soundfile, tokenizers) into
:class:`service.errors.InvalidInput` naming the multipart field.
"""
