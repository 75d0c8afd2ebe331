"""server: the ZeroMQ GPU server of mimo-blender (wire protocol, job queue, worker, `mimo-server`)."""

__version__ = "0.1.0"
