"""One flywheel round, one module per stage, in the order data flows through them.

- :mod:`.generate`: candidates from the registered generators, deduplicated, stored;
- :mod:`.screen`: ensemble predictions, decomposition energies, GNoME's selection rule;
- :mod:`.relax`: the campaign's registered oracle, one batch, each result saved at once;
- :mod:`.hull`: results on the campaign's hull, materials and round metrics;
- :mod:`.retrain`: the next screening ensembles, stored in :mod:`..model_store`.

:mod:`.records` reads what all of them share. Each stage is a plain function over the
campaign's MongoDB documents that takes its settings as arguments and stores its results
before it returns, so a job rerun after a lost worker continues where the last one stopped.
The jobflow jobs in :mod:`hullhunter.workflows.jobs` call them.
"""
