"""mmserve export toolchain: dataset, training, ONNX export, evaluation and bring-your-own-model.

Modules, one concern each:

- ``config``: dataclass configs (data, model, training) and the feature recipes of the
  reference models;
- ``speech``: synthesise the spoken-digit clip set with espeak-ng (``export/data/clips.flac``);
- ``textforms``: digits written in words of several languages, typo noise;
- ``images``: load_digits upscaled, augmented and corrupted into user-like uploads;
- ``dataset``: per-modality pools of features (built through ``service.features``) and the
  fixed test split;
- ``tokenizer``: WordPiece tokenizer trained with ``tokenizers``;
- ``model``: encoders, the four fusion strategies, task heads;
- ``train``: the training loop (modality dropout, inconsistent rows, weighted task losses);
- ``onnx_export``: one fused ONNX graph, the ORT-vs-PyTorch parity check, int8 variant;
- ``evaluate``: metrics per task, per modality subset, reports;
- ``build``: rebuild a reference model folder end to end;
- ``byom``: turn any ``torch.nn.Module`` into a servable folder.
"""
