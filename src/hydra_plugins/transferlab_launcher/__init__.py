"""transferlab's Hydra plugins: ``hydra/launcher=parallel`` (see ``parallel_launcher``) and
``hydra/launcher=heads`` (see ``heads_launcher``)."""
