"""Training data: the clip folder layout (:mod:`.layout`), :class:`~.dataset.MimoDataset`, and the
synthetic yardstick dataset (:mod:`.synth`)."""
