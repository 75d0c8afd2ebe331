"""mimo.pipeline: synthesis backends (MIMO exact/fast, preview) behind one job contract (job.py)."""
