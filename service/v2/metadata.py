"""Server metadata, model metadata and the model configuration, built from the manifest.

Model metadata lists the graph's own tensors (``FP32``/``INT64``, ``-1`` for the batch axis
and other dynamic axes): that is what a Triton client expects of an ONNX model. A raw input
shares its name with a graph input (``image`` is both the FP32 pixels and the BYTES file), so
the raw BYTES alternatives cannot be listed beside them; each modality's tensors say which raw
input replaces them in ``parameters.raw_input``, and the model's ``parameters.raw_inputs``
lists them all. The configuration follows Triton's ``config.pbtxt`` in JSON (dims without the
batch axis, since ``max_batch_size`` is positive), every input optional.
"""

from __future__ import annotations

from typing import Any, Final

from service.manifest import Manifest, Modality, TensorSpec, TextRecipe
from service.settings import ModelBatching
from service.v2 import datatypes
from service.v2.schemas import MetadataTensor, ModelMetadata, ServerMetadata

SERVER_NAME: Final = "mmserve"
PLATFORM: Final = "onnxruntime_onnx"
EXTENSIONS: Final = (
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
)
RAW_SHAPE: Final = "[-1] or [-1, 1]"


def server_metadata(version: str) -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=version, extensions=list(EXTENSIONS))


def model_metadata(manifest: Manifest, versions: list[str]) -> ModelMetadata:
    owners = _input_modalities(manifest)
    return ModelMetadata(
        name=manifest.name,
        versions=versions,
        platform=PLATFORM,
        inputs=[_input_tensor(spec, owners.get(spec.name)) for spec in manifest.inputs],
        outputs=[_tensor(spec) for spec in manifest.outputs],
        parameters={
            "raw_inputs": ",".join(manifest.modality_order),
            "raw_datatype": datatypes.BYTES,
            "raw_shape": RAW_SHAPE,
        },
    )


def model_config(manifest: Manifest, batching: ModelBatching, *, gpu: bool) -> dict[str, Any]:
    return {
        "name": manifest.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": batching.max_batch_size,
        "input": [
            {**_config_tensor(spec), "format": "FORMAT_NONE", "optional": True}
            for spec in manifest.inputs
        ],
        "output": [_config_tensor(spec) for spec in manifest.outputs],
        "dynamic_batching": {
            "preferred_batch_size": [],
            "max_queue_delay_microseconds": round(batching.max_wait_ms * 1000),
            "preserve_ordering": False,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(batching.request_timeout_s * 1_000_000),
                "allow_timeout_override": False,
                "max_queue_size": batching.max_queue,
            },
        },
        "instance_group": [{"kind": "KIND_GPU" if gpu else "KIND_CPU", "count": 1}],
        "parameters": {
            "raw_inputs": {"string_value": ",".join(manifest.modality_order)},
            "raw_datatype": {"string_value": datatypes.BYTES},
            "raw_shape": {"string_value": RAW_SHAPE},
            "modality_order": {"string_value": ",".join(manifest.modality_order)},
        },
    }


def _input_modalities(manifest: Manifest) -> dict[str, Modality]:
    owners: dict[str, Modality] = {}
    for modality in manifest.modality_order:
        recipe = manifest.recipe(modality)
        if isinstance(recipe, TextRecipe):
            owners[recipe.input_ids] = owners[recipe.attention_mask] = modality
        else:
            owners[recipe.input] = modality
    return owners


def _dims(spec: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def _tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(
        name=spec.name, datatype=datatypes.from_manifest(spec.dtype), shape=_dims(spec)
    )


def _input_tensor(spec: TensorSpec, modality: Modality | None) -> MetadataTensor:
    tensor = _tensor(spec)
    tensor.parameters = {"optional": True}
    if modality is not None:
        tensor.parameters |= {"modality": modality, "raw_input": modality}
    return tensor


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": datatypes.config_type(datatypes.from_manifest(spec.dtype)),
        "dims": _dims(spec)[1:],
    }
