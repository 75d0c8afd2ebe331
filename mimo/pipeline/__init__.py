"""mimo.pipeline: synthesis backends (MIMO exact/fast, preview) behind one job contract (job.py).

    from mimo.pipeline import JobEvents, load_backend, prepare_job
    job = prepare_job(character, motion, settings)          # the one door (prepare.py)
    backend = load_backend("mimo", weights="weights/")      # or load_backend("preview")
    stats = backend.generate(job, events)

Modules: ``prepare`` (the job builder every front end calls), ``character`` (the reference
image rule), ``presets`` (the modes), ``job`` (the contract), ``backends`` (load_backend, preview), ``pipeline``
(:class:`~mimo.pipeline.pipeline.MimoPipeline`), ``mimo_backend`` (ROI crop → pipeline → composite),
``schedule`` (DDIM config, context windows), ``roi`` / ``composite`` (docs/MIMO.md §8.3–§8.4),
``template`` (official template folders), ``cli`` (``mimo generate``).
"""
from .backends import load_backend
from .job import Backend, GenerationJob, JobCancelled, JobEvents
from .prepare import prepare_job

__all__ = ["Backend", "GenerationJob", "JobCancelled", "JobEvents", "load_backend", "prepare_job"]
