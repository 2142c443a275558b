"""transferlab's Hydra plugins: ``hydra/launcher=parallel`` (see ``parallel_launcher``)."""
