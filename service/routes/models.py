"""``GET /v1/models`` and ``GET /v1/models/{model}``: what is served and how."""

from __future__ import annotations

from dataclasses import asdict
from typing import TypedDict

from fastapi import APIRouter

from service.deps import ModelDep, RepositoryDep, SettingsDep
from service.manifest import FusionStrategy, Modality, OodSpec
from service.repository import LoadedModel, ModelRepository
from service.runtime.providers import build_description
from service.schemas import (
    ExecutionDetail,
    ModelDetail,
    ModelFailure,
    ModelList,
    ModelSummary,
    OodInfo,
    OodSubsetInfo,
    TaskInfo,
    error_responses,
)
from service.settings import Settings

router = APIRouter(prefix="/v1/models", tags=["models"])


class _Identity(TypedDict):
    """What the list and the detail of a model both say."""

    name: str
    version: str
    versions: list[str]
    default: bool
    description: str
    fusion: FusionStrategy
    modalities: list[Modality]


def _identity(model: LoadedModel, repository: ModelRepository) -> _Identity:
    manifest = model.manifest
    return _Identity(
        name=model.name,
        version=model.version,
        versions=repository.versions(model.name),
        default=model.name == repository.default_name,
        description=manifest.description,
        fusion=manifest.fusion,
        modalities=manifest.modality_order,
    )


def _summary(model: LoadedModel, repository: ModelRepository) -> ModelSummary:
    tasks = [t.name for t in model.manifest.tasks]
    return ModelSummary(**_identity(model, repository), tasks=tasks)


def _detail(model: LoadedModel, repository: ModelRepository, settings: Settings) -> ModelDetail:
    manifest = model.manifest
    return ModelDetail(
        **_identity(model, repository),
        recipes=manifest.modalities,
        tasks=[
            TaskInfo(
                name=t.name,
                labels=t.labels,
                description=t.description,
                min_modalities=t.min_modalities,
            )
            for t in manifest.tasks
        ],
        inputs=manifest.inputs,
        outputs=manifest.outputs,
        limits=settings.limits,
        execution_providers=model.session.providers_in_use,
        execution=ExecutionDetail(
            **asdict(model.session.execution), onnxruntime=build_description()
        ),
        batching=model.batching,
        warmup_s=model.warmup_s,
        evaluation=manifest.evaluation,
        ood=_ood_info(manifest.ood),
        provenance=manifest.provenance.model_dump(mode="json"),
    )


def _ood_info(spec: OodSpec | None) -> OodInfo | None:
    if spec is None:
        return None
    subsets = [OodSubsetInfo(modalities=s.modalities, threshold=s.threshold) for s in spec.subsets]
    return OodInfo(method=spec.method, task=spec.task, rule=spec.rule, subsets=subsets)


@router.get("", summary="List the models", responses=error_responses(503))
async def list_models(repository: RepositoryDep) -> ModelList:
    """Every model served (at its latest version) and every model folder that failed to load."""
    latest = [repository.get(name) for name in repository.names()]
    return ModelList(
        default_model=repository.default_name,
        models=[_summary(model, repository) for model in latest],
        failed=[
            ModelFailure(name=f.name, version=f.version, reason=f.reason)
            for f in repository.failures
        ],
    )


@router.get("/{model}", summary="Describe a model", responses=error_responses(404, 422, 503))
async def get_model(
    model: ModelDep, repository: RepositoryDep, settings: SettingsDep
) -> ModelDetail:
    """Versions, tasks and labels, modalities and their feature recipes, input limits, the
    execution providers in use, batching, and the exporter's evaluation."""
    return _detail(model, repository, settings)
