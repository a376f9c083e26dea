"""Training engine: losses, optimizers, schedules, callbacks and the fit loop.

Import from the submodules (`cnnkit.train.trainer`, `.callbacks`, ...); this package file stays
empty so that importing a light submodule (recipes) does not pull in torch.
"""
