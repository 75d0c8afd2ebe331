"""Body models: the open default body and the SMPL family, driven by our own LBS."""
