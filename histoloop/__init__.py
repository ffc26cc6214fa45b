"""histoloop: the shell on the top floor. The ``histoloop`` CLI (:mod:`histoloop.cli`), the demo, the
simulation of a labelling loop (:mod:`histoloop.simulate`), the whole-slide import and the local stack
(Label Studio, Redis, backend, workers); it wires the floors below and holds no rule of its own (the
settings are :mod:`kernel.settings`)."""
