"""mimo.pipeline: synthesis backends (MIMO exact/fast, preview) behind one job contract (job.py).

    from mimo.pipeline import GenerationJob, JobEvents, load_backend
    backend = load_backend("mimo", weights="weights/")      # or load_backend("preview")
    stats = backend.generate(job, events)

Modules: ``job`` (the contract), ``backends`` (load_backend, preview), ``pipeline``
(:class:`~mimo.pipeline.pipeline.MimoPipeline`), ``mimo_backend`` (ROI crop → pipeline → composite),
``schedule`` (DDIM config, context windows), ``roi`` / ``composite`` (docs/MIMO.md §8.3–§8.4),
``template`` (official template folders), ``cli`` (``mimo generate``).
"""
from .backends import load_backend
from .job import Backend, GenerationJob, JobCancelled, JobEvents

__all__ = ["Backend", "GenerationJob", "JobCancelled", "JobEvents", "load_backend"]
